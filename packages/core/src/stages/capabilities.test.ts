/**
 * Optional capabilities pass through every stage: a stack never silently
 * loses the trim, write-zeroes or block status its store offers, and a stage
 * over a store without them does not pretend to have them.
 */
import { describe, expect, it } from "vitest";
import type { Backend, Extent } from "../backend.js";
import { MemoryBackend } from "../backends/memory.js";
import { ManagedPipeline } from "../managed-pipeline.js";
import { InstrumentedBackend, patternBytes } from "../testing/index.js";
import { ArbitraryStage } from "./arbitrary.js";
import { ChunkedStage } from "./chunked.js";
import { LockableStage } from "./lockable.js";
import { Stage } from "./stage.js";
import { TrackingStage } from "./tracking.js";

const chunkSize = 4096;
const size = 16 * chunkSize;

/** A memory store that also reports block status (as an NBD client does): all of it is data. */
class StatusReportingMemory extends MemoryBackend {
  readonly blockStatus = async (offset: number, length: number): Promise<Extent[]> => [
    { offset, length, zero: false, hole: false },
  ];
}

/** A store, under an instrument that records what reaches it. */
function filledStore(): { memory: MemoryBackend; store: InstrumentedBackend } {
  const memory = new StatusReportingMemory(size);
  return { memory, store: new InstrumentedBackend(memory) };
}

async function fill(backend: Backend): Promise<void> {
  await backend.writeAt(new Uint8Array(size).fill(0xaa), 0);
}

async function contents(backend: Backend): Promise<Uint8Array> {
  const bytes = new Uint8Array(size);
  await backend.readAt(bytes, 0);
  return bytes;
}

describe("capabilities through the stages", () => {
  it("trim and write-zeroes reach the store through arbitrary → lockable → tracking → chunked", async () => {
    const { memory, store } = filledStore();
    await fill(memory);
    const tracking = new TrackingStage(new ChunkedStage(store, chunkSize), chunkSize);
    const top = new ArbitraryStage(new LockableStage(tracking), chunkSize);
    expect(typeof top.trim).toBe("function");
    expect(typeof top.writeZeroes).toBe("function");
    expect(typeof top.blockStatus).toBe("function");
    tracking.track();

    // Chunks 2..3 whole, plus a partial head and tail: only whole chunks are trimmed below.
    await top.trim!(2 * chunkSize - 100, 2 * chunkSize + 300);
    await top.writeZeroes!(8 * chunkSize, 3 * chunkSize);
    expect(store.trims).toEqual([
      [2 * chunkSize, chunkSize],
      [3 * chunkSize, chunkSize],
    ]);
    expect(store.zeroes).toEqual([
      [8 * chunkSize, chunkSize],
      [9 * chunkSize, chunkSize],
      [10 * chunkSize, chunkSize],
    ]);
    const expected = new Uint8Array(size).fill(0xaa);
    expected.fill(0, 2 * chunkSize - 100, 4 * chunkSize + 200);
    expected.fill(0, 8 * chunkSize, 11 * chunkSize);
    expect(Buffer.compare(await contents(memory), expected)).toBe(0);
    expect(tracking.stopTracking().sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 8, 9, 10]);
    expect(await top.blockStatus!(100, size - 200)).toEqual([
      { offset: 100, length: size - 200, zero: false, hole: false },
    ]);
  });

  it("a stage over a store without a capability does not declare it", () => {
    const plain: Backend = {
      size,
      readAt: async () => {},
      writeAt: async () => {},
      sync: async () => {},
      close: async () => {},
    };
    for (const stage of [
      new Stage(plain),
      new ArbitraryStage(plain, chunkSize),
      new LockableStage(plain),
      new TrackingStage(plain, chunkSize),
      new ChunkedStage(plain, chunkSize),
    ]) {
      expect([stage.trim, stage.writeZeroes, stage.blockStatus]).toEqual([undefined, undefined, undefined]);
    }
  });

  it("the chunked stage refuses a trim that does not cover whole chunks", async () => {
    const chunked = new ChunkedStage(new MemoryBackend(size), chunkSize);
    await expect(chunked.trim!(100, chunkSize)).rejects.toMatchObject({ code: "ERR_MISALIGNED" });
    await expect(chunked.trim!(0, chunkSize + 1)).rejects.toMatchObject({ code: "ERR_MISALIGNED" });
    await expect(chunked.trim!(0, size + chunkSize)).rejects.toMatchObject({ code: "ERR_OUT_OF_RANGE" });
  });

  it("a managed pipeline trims its cache and pushes the zeros to the remote as write-zeroes", async () => {
    const remoteMemory = new MemoryBackend(size);
    await remoteMemory.writeAt(patternBytes(size, 3), 0);
    const remote = new InstrumentedBackend(remoteMemory);
    const local = new InstrumentedBackend(new MemoryBackend(size));
    const pipeline = new ManagedPipeline({
      remote,
      local,
      chunkSize,
      pull: false,
      push: { intervalMs: null },
    });
    pipeline.start();
    try {
      await pipeline.backend.trim!(4 * chunkSize, 2 * chunkSize);
      await pipeline.backend.writeZeroes!(chunkSize + 10, 20);
      // The cache was trimmed whole-chunk, without fetching what is thrown away.
      expect(local.trims).toEqual([
        [4 * chunkSize, chunkSize],
        [5 * chunkSize, chunkSize],
      ]);
      expect(remote.reads).toEqual([chunkSize]); // only the partly zeroed chunk was fetched
      await pipeline.sync();
      expect(remote.zeroes.sort((a, b) => a[0] - b[0])).toEqual([
        [4 * chunkSize, chunkSize],
        [5 * chunkSize, chunkSize],
      ]);
      const expected = Buffer.from(patternBytes(size, 3));
      expected.fill(0, 4 * chunkSize, 6 * chunkSize);
      expected.fill(0, chunkSize + 10, chunkSize + 30);
      expect(Buffer.compare(await contents(remoteMemory), expected)).toBe(0);
    } finally {
      await pipeline.close();
    }
  });
});
