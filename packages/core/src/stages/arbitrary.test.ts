import { describe, expect, it } from "vitest";
import type { Backend } from "../backend.js";
import { MemoryBackend } from "../backends/memory.js";
import {
  describeBackendConformance,
  InstrumentedBackend,
  nextTurn,
  patternBytes,
  waitFor,
} from "../testing/index.js";
import { ArbitraryStage } from "./arbitrary.js";
import { ChunkedStage } from "./chunked.js";

const chunkSize = 4096;

describeBackendConformance(
  "arbitrary over chunked memory",
  async (size) => new ArbitraryStage(new ChunkedStage(new MemoryBackend(size), chunkSize), chunkSize),
);

/**
 * A chunk-keyed store like the original's Redis/S3 backends: a missing chunk
 * leaves the caller's buffer untouched ("returns len(p), nil"). The original
 * Arbitrary stage reused one buffer and so leaked stale bytes from it.
 */
class SparseStore implements Backend {
  readonly chunks = new Map<number, Uint8Array>();
  constructor(readonly size: number) {}
  async readAt(buffer: Uint8Array, offset: number): Promise<void> {
    const stored = this.chunks.get(offset);
    if (stored) buffer.set(stored);
  }
  async writeAt(buffer: Uint8Array, offset: number): Promise<void> {
    this.chunks.set(offset, buffer.slice());
  }
  async sync(): Promise<void> {}
  async close(): Promise<void> {}
}

describe("ArbitraryStage", () => {
  it("never returns stale bytes from a previous chunk when the store leaves a buffer untouched", async () => {
    const store = new SparseStore(4 * chunkSize);
    const stage = new ArbitraryStage(store, chunkSize);
    await stage.writeAt(patternBytes(10, 1), 5);
    // Reads a partial range of chunk 0 (written) and then of chunk 1 (never written).
    const back = new Uint8Array(chunkSize);
    await stage.readAt(back, 100);
    expect(back.subarray(chunkSize - 100).every((byte) => byte === 0)).toBe(true);
  });

  it("passes fully covered chunks through without a copy and only reads partial ones", async () => {
    const inner = new InstrumentedBackend(new MemoryBackend(8 * chunkSize));
    const stage = new ArbitraryStage(inner, chunkSize);
    await stage.writeAt(new Uint8Array(3 * chunkSize), chunkSize);
    expect(inner.reads).toEqual([]);
    expect(inner.writes.sort((a, b) => a - b)).toEqual([chunkSize, 2 * chunkSize, 3 * chunkSize]);
    await stage.writeAt(new Uint8Array(chunkSize), chunkSize / 2);
    expect(inner.reads.sort((a, b) => a - b)).toEqual([0, chunkSize]);
  });

  it("serializes concurrent partial writes to one chunk so neither is lost", async () => {
    const inner = new InstrumentedBackend(new MemoryBackend(chunkSize));
    inner.readGate.close(); // the first read-modify-write stays at its read while the others arrive
    const stage = new ArbitraryStage(inner, chunkSize);
    const parts = Array.from({ length: 16 }, (_, i) => patternBytes(256, i + 1));
    const writes = Promise.all(parts.map((part, i) => stage.writeAt(part, i * 256)));
    await waitFor(() => inner.readGate.waiting > 0, "the first write's read of the chunk");
    await nextTurn();
    expect(inner.readGate.waiting).toBe(1); // the other writes wait for it, not beside it
    inner.readGate.open();
    await writes;
    const back = new Uint8Array(chunkSize);
    await stage.readAt(back, 0);
    for (const [i, part] of parts.entries()) {
      expect(Buffer.compare(back.subarray(i * 256, (i + 1) * 256), part)).toBe(0);
    }
  });

  it("handles a short last chunk", async () => {
    const size = 3 * chunkSize + 100;
    const stage = new ArbitraryStage(new ChunkedStage(new MemoryBackend(size), chunkSize), chunkSize);
    const data = patternBytes(300, 9);
    await stage.writeAt(data, size - 300);
    const back = new Uint8Array(300);
    await stage.readAt(back, size - 300);
    expect(Buffer.compare(back, data)).toBe(0);
    await expect(stage.readAt(new Uint8Array(2), size - 1)).rejects.toMatchObject({
      code: "ERR_OUT_OF_RANGE",
    });
  });
});
