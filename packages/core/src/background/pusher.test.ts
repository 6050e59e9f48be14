import { describe, expect, it } from "vitest";
import { MemoryBackend } from "../backends/memory.js";
import { ChunkBitmap } from "../chunk-bitmap.js";
import { ChunkLayout } from "../chunk-layout.js";
import { InstrumentedBackend, patternBytes, settlesThisTurn, waitFor } from "../testing/index.js";
import { Pusher } from "./pusher.js";

const chunkSize = 4096;

function setup(chunks = 8, intervalMs: number | null = null) {
  const size = chunks * chunkSize;
  const local = MemoryBackend.from(patternBytes(size, 5));
  const remote = new InstrumentedBackend(new MemoryBackend(size));
  const presence = new ChunkBitmap(chunks);
  presence.setAll();
  const pushed: number[] = [];
  const errors: unknown[] = [];
  const pusher = new Pusher(local, remote, new ChunkLayout(size, chunkSize), {
    workers: 2,
    intervalMs,
    presence,
    retry: { attempts: 2, backoffMs: 1 },
    onPushed: (chunk) => pushed.push(chunk),
    onError: (error) => errors.push(error),
  });
  return { local, remote, pusher, presence, pushed, errors };
}

async function remoteChunk(remote: InstrumentedBackend, chunk: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(chunkSize);
  await remote.inner.readAt(bytes, chunk * chunkSize);
  return bytes;
}

describe("Pusher", () => {
  it("takes chunks written behind its back from the written bitmap on every flush", async () => {
    const size = 40 * chunkSize;
    const local = MemoryBackend.from(patternBytes(size, 6));
    const remote = new InstrumentedBackend(new MemoryBackend(size));
    const written = new ChunkBitmap(40);
    const pusher = new Pusher(local, remote, new ChunkLayout(size, chunkSize), {
      workers: 2,
      intervalMs: null,
      written,
    });
    for (const chunk of [0, 31, 32, 39]) written.set(chunk); // across word boundaries
    pusher.markDirty(5);
    expect(pusher.dirtyCount).toBe(5);
    await pusher.flush();
    expect([...remote.writes].sort((a, b) => a - b)).toEqual([0, 5, 31, 32, 39].map((c) => c * chunkSize));
    expect(written.cardinality()).toBe(0);
    expect(pusher.dirtyCount).toBe(0);
    written.set(7);
    await pusher.close(); // the final push takes them too
    expect(remote.writes.at(-1)).toBe(7 * chunkSize);
  });

  it("pushes each dirty chunk once however often it was marked, then syncs the remote", async () => {
    const { local, remote, pusher } = setup();
    for (const chunk of [3, 1, 3, 3, 1]) pusher.markDirty(chunk);
    expect(pusher.dirtyCount).toBe(2);
    await pusher.flush();
    expect(remote.writes.sort((a, b) => a - b)).toEqual([chunkSize, 3 * chunkSize]);
    expect(remote.syncs).toBe(1);
    const expected = new Uint8Array(chunkSize);
    await local.readAt(expected, 3 * chunkSize);
    expect(Buffer.compare(await remoteChunk(remote, 3), expected)).toBe(0);
    await pusher.flush();
    expect(remote.writes.length).toBe(2);
  });

  it("never pushes a chunk that is not local", async () => {
    const { remote, pusher, presence } = setup();
    presence.clear(4);
    pusher.markDirty(4);
    await pusher.flush();
    expect(remote.writes).toEqual([]);
  });

  it("pushes a chunk rewritten during its push again afterwards, never concurrently", async () => {
    const { local, remote, pusher } = setup();
    remote.writeGate.close();
    pusher.markDirty(0);
    const first = pusher.flush();
    await waitFor(() => remote.writeGate.waiting === 1, "the first push to be in flight");
    const newer = patternBytes(chunkSize, 77);
    await local.writeAt(newer, 0);
    pusher.markDirty(0);
    const second = pusher.flush();
    expect(await settlesThisTurn(second)).toBe(false);
    expect(remote.writeGate.waiting).toBe(1); // the second push waits for the first, off the remote
    remote.writeGate.open();
    await Promise.all([first, second]);
    expect(remote.writes).toEqual([0, 0]);
    expect(remote.maxInFlight).toBe(1);
    expect(Buffer.compare(await remoteChunk(remote, 0), newer)).toBe(0);
  });

  it("keeps failed chunks dirty, rejects flush, and pushes them once the remote is back", async () => {
    const { remote, pusher } = setup();
    remote.down = true;
    pusher.markDirty(2);
    pusher.markDirty(5);
    await expect(pusher.flush()).rejects.toMatchObject({ code: "ERR_REMOTE_FAILED" });
    expect(pusher.dirtyCount).toBe(2);
    remote.down = false;
    await pusher.flush();
    expect(pusher.dirtyCount).toBe(0);
    expect(remote.writes.sort((a, b) => a - b)).toEqual([2 * chunkSize, 5 * chunkSize]);
  });

  it("a flush waits for chunks an earlier flush took but has not pushed yet", async () => {
    const { remote, pusher } = setup(8);
    remote.writeGate.close();
    for (let chunk = 0; chunk < 8; chunk++) pusher.markDirty(chunk);
    const first = pusher.flush(); // takes all 8, pushes 2 at a time
    await waitFor(() => remote.writeGate.waiting === 2, "the first flush's pushes to be in flight");
    const second = pusher.flush(); // nothing dirty of its own, but must not return before the first is done
    expect(await settlesThisTurn(second)).toBe(false);
    remote.writeGate.open();
    await second;
    expect(remote.writes.length).toBe(8);
    await first;
  });

  it("retries a transient failure within one flush", async () => {
    const { remote, pusher } = setup();
    remote.failWrites = 1;
    pusher.markDirty(1);
    await pusher.flush();
    expect(remote.writes).toEqual([chunkSize]);
  });

  it("pushes on its interval, reports background errors, and close() does a final push", async () => {
    // The 10 ms interval is what is tested: nothing but the timer pushes until close().
    const { remote, pusher, errors } = setup(8, 10);
    pusher.start();
    pusher.markDirty(6);
    await waitFor(() => remote.writes.length > 0, "the interval to push chunk 6");
    expect(remote.writes).toEqual([6 * chunkSize]);
    remote.failWrites = 2;
    pusher.markDirty(7);
    await waitFor(() => errors.length > 0, "the interval's push to report its failure");
    expect(errors.length).toBeGreaterThan(0);
    pusher.markDirty(0);
    await pusher.close();
    await pusher.close();
    expect(remote.writes).toContain(0);
    expect(remote.writes).toContain(7 * chunkSize);
  });

  it("refuses zero workers instead of silently never pushing", () => {
    const local = new MemoryBackend(4096);
    expect(
      () => new Pusher(local, local, new ChunkLayout(4096, 4096), { workers: 0, intervalMs: null }),
    ).toThrow(/at least 1/);
  });
});
