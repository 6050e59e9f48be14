import { describe, expect, it } from "vitest";
import { MemoryBackend } from "./backends/memory.js";
import type { Progress } from "./events.js";
import { ManagedPipeline } from "./managed-pipeline.js";
import {
  describeBackendConformance,
  InstrumentedBackend,
  nextTurn,
  patternBytes,
  testRandom,
  waitFor,
} from "./testing/index.js";

const chunkSize = 16 * 1024;

describeBackendConformance("managed pipeline over memory", async (size) => {
  const pipeline = new ManagedPipeline({
    remote: new MemoryBackend(size),
    local: new MemoryBackend(size),
    chunkSize,
    push: { intervalMs: null },
  });
  pipeline.start();
  // Closing the pipeline's backend closes the whole pipeline (final push included).
  return Object.assign(pipeline.backend, { close: () => pipeline.close() });
});

/** The bytes of a memory backend, read from its segments (works after close). */
function contents(backend: MemoryBackend): Uint8Array {
  return Buffer.concat(backend.segments);
}

describe("ManagedPipeline", () => {
  it("concurrent puller, readers and writers end byte-for-byte equal to a reference model, locally and remotely", async () => {
    const size = 64 * chunkSize + 1234;
    const initial = patternBytes(size, 11);
    const remote = new InstrumentedBackend(MemoryBackend.from(initial));
    // A stress test: a slow remote (1 ms a call) and a short push interval widen the windows in which
    // the pull, the pushes and the operations overlap. Nothing waits on them; any interleaving must pass.
    remote.latencyMs = 1;
    const pipeline = new ManagedPipeline({
      remote,
      local: new MemoryBackend(size),
      chunkSize,
      pull: { workers: 4 },
      push: { workers: 3, intervalMs: 5 },
    });
    pipeline.start();
    const model = initial.slice();
    const random = testRandom();
    const next = random.next;
    const operations: Promise<void>[] = [];
    for (let i = 0; i < 300; i++) {
      const offset = Math.floor(next() * (size - 1));
      const length = 1 + Math.floor(next() * Math.min(3 * chunkSize, size - offset - 1));
      if (next() < 0.5) {
        const data = patternBytes(length, 1000 + i);
        model.set(data, offset);
        // Writes are issued in order per call; the model applies them in issue order, so
        // overlapping writes must not run concurrently: chain each on the previous ones.
        operations.push(Promise.all(operations).then(() => pipeline.backend.writeAt(data, offset)));
      } else {
        const expected = model.slice(offset, offset + length);
        operations.push(
          Promise.all(operations).then(async () => {
            const back = new Uint8Array(length);
            await pipeline.backend.readAt(back, offset);
            expect(Buffer.compare(back, expected), `read at ${offset}+${length}`).toBe(0);
          }),
        );
      }
      // Lets the pull and the pushes run between batches of operations (an interleaving, not a wait).
      if (i % 10 === 0) await nextTurn();
    }
    await Promise.all(operations);
    await pipeline.pulled();
    const all = new Uint8Array(size);
    await pipeline.backend.readAt(all, 0);
    expect(Buffer.compare(all, model)).toBe(0);
    await pipeline.close();
    expect(Buffer.compare(contents(remote.inner as MemoryBackend), model)).toBe(0);
  });

  it("unordered concurrent reads and writes to distinct chunks while pulling", async () => {
    const chunks = 48;
    const size = chunks * chunkSize;
    const initial = patternBytes(size, 3);
    const remote = new InstrumentedBackend(MemoryBackend.from(initial));
    remote.latencyMs = 2; // a stress test: a slow remote, so reads, writes and the pull overlap
    const pipeline = new ManagedPipeline({
      remote,
      local: new MemoryBackend(size),
      chunkSize,
      pull: { workers: 2 },
    });
    pipeline.start();
    const model = initial.slice();
    const tasks: Promise<void>[] = [];
    for (let chunk = 0; chunk < chunks; chunk++) {
      const offset = chunk * chunkSize + 100;
      if (chunk % 3 === 0) {
        const data = patternBytes(500, chunk);
        model.set(data, offset);
        tasks.push(pipeline.backend.writeAt(data, offset));
      } else {
        tasks.push(
          (async () => {
            const back = new Uint8Array(500);
            await pipeline.backend.readAt(back, offset);
            expect(Buffer.compare(back, initial.subarray(offset, offset + 500))).toBe(0);
          })(),
        );
      }
    }
    await Promise.all(tasks);
    await pipeline.pulled();
    // Each read fetched its chunk at most once: by the pull's run, or alone when it overtook that run.
    expect(remote.reads.length).toBeLessThanOrEqual(chunks + 1);
    await pipeline.close();
    expect(Buffer.compare(contents(remote.inner as MemoryBackend), model)).toBe(0);
  });

  it("close() pushes every write even without an interval, and reports progress", async () => {
    const size = 8 * chunkSize;
    const remote = new MemoryBackend(size);
    const pipeline = new ManagedPipeline({
      remote,
      local: new MemoryBackend(size),
      chunkSize,
      pull: false,
      push: { intervalMs: null },
    });
    const seen: Progress[] = [];
    pipeline.on("progress", (progress) => seen.push(progress));
    pipeline.start();
    const data = patternBytes(3 * chunkSize, 4);
    await pipeline.backend.writeAt(data, chunkSize / 2);
    expect(pipeline.progress()).toMatchObject({
      chunksTotal: 8,
      chunksLocal: 4,
      dirtyChunks: 4,
      bytesPulled: 2 * chunkSize,
    });
    await pipeline.close();
    expect(Buffer.compare(contents(remote).subarray(chunkSize / 2, chunkSize / 2 + data.length), data)).toBe(
      0,
    );
    expect(seen.at(-1)).toMatchObject({ bytesPushed: 4 * chunkSize, dirtyChunks: 0 });
    await expect(pipeline.sync()).rejects.toMatchObject({ code: "ERR_CLOSED" });
  });

  it("reports progress once per event-loop turn, not once per chunk", async () => {
    const size = 256 * chunkSize;
    const pipeline = new ManagedPipeline({
      remote: MemoryBackend.from(patternBytes(size, 5)),
      local: new MemoryBackend(size),
      chunkSize,
      pull: { workers: 4, requestBytes: 64 * chunkSize },
      push: false,
    });
    const seen: Progress[] = [];
    pipeline.on("progress", (progress) => seen.push(progress));
    pipeline.start();
    await pipeline.pulled();
    await waitFor(() => seen.at(-1)?.chunksLocal === 256, "the report of the last run");
    // Four runs of 64 chunks: one report per turn in which chunks arrived, the last one complete.
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.length).toBeLessThanOrEqual(4);
    expect(seen.at(-1)).toMatchObject({ chunksLocal: 256, chunksTotal: 256 });
    await pipeline.close();
  });

  it("readFromRemote: the pull fetches those chunks next, or, once it has finished, the pipeline fetches them itself", async () => {
    const size = 16 * chunkSize;
    const pipeline = new ManagedPipeline({
      remote: MemoryBackend.from(patternBytes(size, 9)),
      local: new MemoryBackend(size),
      chunkSize,
      pull: { workers: 1 },
      push: false,
    });
    pipeline.start();
    await pipeline.pulled();
    pipeline.markRemote([5, 6]);
    expect(pipeline.progress().chunksLocal).toBe(14);
    pipeline.readFromRemote(5, 6);
    await waitFor(() => pipeline.presence.has(5) && pipeline.presence.has(6), "chunks 5 and 6 to be fetched");
    expect(pipeline.presence.has(5) && pipeline.presence.has(6)).toBe(true);
    expect(pipeline.progress().chunksLocal).toBe(16);
    await pipeline.close();
  });

  it("after a demand miss, the following chunks are pulled next (readahead), ahead of the sweep", async () => {
    const size = 64 * chunkSize;
    const shared = MemoryBackend.from(patternBytes(size, 12));
    const demand = new InstrumentedBackend(shared);
    const background = new InstrumentedBackend(shared);
    background.readGate.close(); // the sweep's first pull is held while the reader misses
    const pipeline = new ManagedPipeline({
      remote: demand,
      pullRemote: background,
      local: new MemoryBackend(size),
      chunkSize,
      pull: { workers: 1, readahead: 3, requestBytes: chunkSize },
      push: false,
    });
    pipeline.start();
    await waitFor(() => background.readGate.waiting === 1, "the sweep's first pull");
    await pipeline.backend.readAt(new Uint8Array(10), 40 * chunkSize);
    background.readGate.open();
    await pipeline.pulled();
    expect(demand.reads).toEqual([40 * chunkSize]);
    const order = background.reads.map((offset) => offset / chunkSize);
    // The single worker was busy with one sweep chunk, then took 41, 42, 43.
    expect(order.slice(0, 5)).toEqual([0, 41, 42, 43, 1]);
    expect(new Set([...order, 40]).size).toBe(64);
    await pipeline.close();
  });

  it("pulls over pullRemote and fetches demand misses over remote, so a reader never queues behind the pull", async () => {
    const size = 16 * chunkSize;
    const shared = MemoryBackend.from(patternBytes(size, 5));
    const demand = new InstrumentedBackend(shared);
    const background = new InstrumentedBackend(shared);
    background.readGate.close(); // the pull is under way, held, while the reader misses
    const pipeline = new ManagedPipeline({
      remote: demand,
      pullRemote: background,
      local: new MemoryBackend(size),
      chunkSize,
      pull: { workers: 2, readahead: 0, requestBytes: chunkSize },
      push: false,
    });
    pipeline.start();
    await waitFor(() => background.readGate.waiting === 2, "both pull workers' first pulls");
    const back = new Uint8Array(100);
    // Completes while the pull is held: the reader did not queue behind it.
    await pipeline.backend.readAt(back, 12 * chunkSize);
    background.readGate.open();
    expect(Buffer.compare(back, patternBytes(size, 5).subarray(12 * chunkSize, 12 * chunkSize + 100))).toBe(
      0,
    );
    await pipeline.pulled();
    expect(demand.reads).toEqual([12 * chunkSize]);
    expect(background.reads.length).toBe(15);
    await pipeline.close();
  });

  it("pulls runs of small chunks with one request each, and a reader of a chunk in a run fetches it alone", async () => {
    const size = 64 * chunkSize;
    const shared = MemoryBackend.from(patternBytes(size, 7));
    const demand = new InstrumentedBackend(shared);
    const background = new InstrumentedBackend(shared);
    background.readGate.close(); // the runs stay in flight while the reader misses
    const chunksLocal: number[] = [];
    const pipeline = new ManagedPipeline({
      remote: demand,
      pullRemote: background,
      local: new MemoryBackend(size),
      chunkSize,
      pull: { workers: 2, requestBytes: 16 * chunkSize },
      push: false,
    });
    pipeline.on("chunk-local", (chunk) => chunksLocal.push(chunk));
    pipeline.start();
    await waitFor(() => background.readGate.waiting === 2, "the first two runs");
    // Chunk 3 is in the first run: the reader does not wait for the whole run, it fetches chunk 3 alone.
    const back = new Uint8Array(100);
    await pipeline.backend.readAt(back, 3 * chunkSize + 50);
    expect(
      Buffer.compare(back, patternBytes(size, 7).subarray(3 * chunkSize + 50, 3 * chunkSize + 150)),
    ).toBe(0);
    background.readGate.open();
    await pipeline.pulled();
    expect(demand.reads).toEqual([3 * chunkSize]);
    // Runs ramp from 64 KiB (4 chunks) up to 16 chunks: 0-3, 4-11, 12-27, 28-43, 44-59, 60-63.
    expect([...background.reads].sort((a, b) => a - b)).toEqual(
      [0, 4, 12, 28, 44, 60].map((chunk) => chunk * chunkSize),
    );
    expect(new Set(chunksLocal).size).toBe(64);
    const all = new Uint8Array(size);
    await pipeline.backend.readAt(all, 0);
    expect(Buffer.compare(all, patternBytes(size, 7))).toBe(0);
    expect(pipeline.progress()).toMatchObject({ chunksLocal: 64, bytesPulled: size });
    await pipeline.close();
  });

  it("refuses a pull request size that is not a positive integer", () => {
    const make = () =>
      new ManagedPipeline({
        remote: new MemoryBackend(4096),
        local: new MemoryBackend(4096),
        chunkSize: 4096,
        pull: { requestBytes: 0 },
      });
    expect(make).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }));
  });

  it("with push disabled explicitly, writes never reach the remote", async () => {
    const size = 4 * chunkSize;
    const remote = new InstrumentedBackend(new MemoryBackend(size));
    const pipeline = new ManagedPipeline({ remote, local: new MemoryBackend(size), chunkSize, push: false });
    pipeline.start();
    await pipeline.backend.writeAt(new Uint8Array(chunkSize).fill(1), 0);
    await pipeline.close();
    expect(remote.writes).toEqual([]);
  });

  it("finalize(dirty) refetches chunks changed remotely, first", async () => {
    const size = 16 * chunkSize;
    const remote = new InstrumentedBackend(MemoryBackend.from(patternBytes(size, 1)));
    const pipeline = new ManagedPipeline({
      remote,
      local: new MemoryBackend(size),
      chunkSize,
      pull: { workers: 1 },
      awaitFinalize: true,
    });
    pipeline.start();
    await waitFor(() => pipeline.progress().chunksLocal === 16, "every chunk to be pulled");
    const changed = patternBytes(chunkSize, 2);
    await remote.inner.writeAt(changed, 5 * chunkSize);
    remote.reads.length = 0;
    pipeline.finalize([5]);
    await pipeline.pulled();
    expect(remote.reads).toEqual([5 * chunkSize]);
    const back = new Uint8Array(chunkSize);
    await pipeline.backend.readAt(back, 5 * chunkSize);
    expect(Buffer.compare(back, changed)).toBe(0);
    await pipeline.close();
  });

  it("reads fail with a typed error while the remote is down, and work again when it returns", async () => {
    const size = 4 * chunkSize;
    const remote = new InstrumentedBackend(MemoryBackend.from(patternBytes(size, 8)));
    const pipeline = new ManagedPipeline({ remote, local: new MemoryBackend(size), chunkSize, pull: false });
    pipeline.start();
    remote.down = true;
    await expect(pipeline.backend.readAt(new Uint8Array(10), 0)).rejects.toMatchObject({
      code: "ERR_REMOTE_UNREACHABLE",
    });
    // A write needs no fetch when it covers whole chunks: it succeeds locally while the remote is away.
    await pipeline.backend.writeAt(patternBytes(chunkSize, 9), chunkSize);
    await expect(pipeline.sync()).rejects.toMatchObject({ code: "ERR_REMOTE_FAILED" });
    remote.down = false;
    await pipeline.sync();
    const back = new Uint8Array(chunkSize);
    await remote.inner.readAt(back, chunkSize);
    expect(Buffer.compare(back, patternBytes(chunkSize, 9))).toBe(0);
    await pipeline.close();
  });
});
