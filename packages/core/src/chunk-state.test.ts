import { describe, expect, it } from "vitest";
import { MemoryBackend } from "./backends/memory.js";
import { Pusher } from "./background/pusher.js";
import { ChunkBitmap } from "./chunk-bitmap.js";
import { ChunkLayout } from "./chunk-layout.js";
import { ChunkState, type ChunkStateIdentity } from "./chunk-state.js";
import { ManagedPipeline } from "./managed-pipeline.js";
import { InstrumentedBackend, patternBytes } from "./testing/index.js";
import { deferred } from "./util/abort.js";

const chunkSize = 4096;
const identity: ChunkStateIdentity = {
  size: 16 * chunkSize,
  chunkSize,
  cache: "dev:1 ino:2",
  boot: "boot-a",
};

function stateBuffer(id = identity): SharedArrayBuffer {
  return new SharedArrayBuffer(ChunkState.byteLength(id.size, id.chunkSize));
}

describe("ChunkState", () => {
  it("keeps its bits for the next run on the same boot, clean or not", () => {
    const buffer = stateBuffer();
    const first = ChunkState.over(buffer, identity);
    expect(first.outcome).toEqual({ kind: "new" });
    first.presence.set(3);
    first.written.set(4);
    first.pending.set(5);
    // Killed: never marked clean.
    const second = ChunkState.over(buffer, identity);
    expect(second.outcome).toEqual({ kind: "reused", clean: false });
    expect([second.presence.has(3), second.written.has(4), second.pending.has(5)]).toEqual([
      true,
      true,
      true,
    ]);
    second.markClean();
    const third = ChunkState.over(buffer, { ...identity, boot: "boot-b" });
    expect(third.outcome).toEqual({ kind: "reused", clean: true });
    expect(third.presence.has(3)).toBe(true);
  });

  it("discards the bits of a run left open before a reboot, or of another cache", () => {
    const buffer = stateBuffer();
    ChunkState.over(buffer, identity).presence.set(1);
    const afterReboot = ChunkState.over(buffer, { ...identity, boot: "boot-b" });
    expect(afterReboot.outcome).toMatchObject({
      kind: "discarded",
      reason: expect.stringContaining("uncleanly"),
    });
    expect(afterReboot.presence.cardinality()).toBe(0);
    afterReboot.presence.set(2);
    const otherCache = ChunkState.over(buffer, { ...identity, boot: "boot-b", cache: "dev:1 ino:3" });
    expect(otherCache.outcome).toMatchObject({
      kind: "discarded",
      reason: expect.stringContaining("replaced"),
    });
    expect(otherCache.presence.has(2)).toBe(false);
  });

  it("refuses a state made for another size or chunk size, and a buffer that is not a state", () => {
    const buffer = stateBuffer();
    ChunkState.over(buffer, identity);
    expect(() => ChunkState.over(buffer, { ...identity, chunkSize: 2 * chunkSize })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }),
    );
    new Uint8Array(buffer).fill(7, 0, 4);
    expect(() => ChunkState.over(buffer, identity)).toThrow(/not one/);
  });
});

describe("Pusher with a pending record", () => {
  function setup(pending: ChunkBitmap, written?: ChunkBitmap) {
    const size = 16 * chunkSize;
    const local = MemoryBackend.from(patternBytes(size, 3));
    const remote = new InstrumentedBackend(new MemoryBackend(size));
    const pusher = new Pusher(local, remote, new ChunkLayout(size, chunkSize), {
      workers: 2,
      intervalMs: null,
      pending,
      ...(written ? { written } : {}),
      retry: { attempts: 1, backoffMs: 1 },
    });
    return { local, remote, pusher };
  }

  it("marks a chunk pending before it is queued and clears it only after the push and the remote's sync", async () => {
    const pending = new ChunkBitmap(16);
    const { remote, pusher } = setup(pending);
    pusher.markDirty(2);
    expect(pending.has(2)).toBe(true);
    const sync = remote.sync.bind(remote);
    const entered = deferred();
    const syncing = deferred();
    remote.sync = async () => {
      entered.resolve();
      await syncing.promise;
      await sync();
    };
    const flushed = pusher.flush();
    await entered.promise;
    // The chunk is on the remote, not yet durable there: still pending.
    expect(pending.has(2)).toBe(true);
    syncing.resolve();
    await flushed;
    expect(pending.has(2)).toBe(false);
    expect(remote.writes).toEqual([2 * chunkSize]);
  });

  it("keeps a chunk pending when it changed during its push, or its push failed", async () => {
    const pending = new ChunkBitmap(16);
    const { remote, pusher } = setup(pending);
    pusher.markDirty(1);
    const write = remote.writeAt.bind(remote);
    remote.writeAt = async (buffer, offset) => {
      pusher.markDirty(1); // written again while its old bytes travel
      remote.writeAt = write;
      await write(buffer, offset);
    };
    await pusher.flush();
    expect(pending.has(1)).toBe(true);
    await pusher.flush();
    expect(pending.has(1)).toBe(false);

    pusher.markDirty(3);
    remote.failWrites = 1;
    await expect(pusher.flush()).rejects.toMatchObject({ code: "ERR_REMOTE_FAILED" });
    expect(pending.has(3)).toBe(true);
    await pusher.flush();
    expect(pending.has(3)).toBe(false);
  });

  it("moves chunks from the written bitmap into the pending record, and pushes a previous run's pending chunks", async () => {
    const pending = new ChunkBitmap(16);
    pending.set(7); // left by a run that was killed
    const written = new ChunkBitmap(16);
    written.set(9);
    const { remote, pusher } = setup(pending, written);
    expect(pusher.dirtyCount).toBe(2);
    await pusher.flush();
    expect(remote.writes.sort((a, b) => a - b)).toEqual([7 * chunkSize, 9 * chunkSize]);
    expect(written.cardinality() + pending.cardinality()).toBe(0);
  });
});

describe("ManagedPipeline over a chunk state", () => {
  it("after a restart reads nothing from the remote that the cache holds, and pushes what was still dirty", async () => {
    const size = identity.size;
    const remote = new InstrumentedBackend(MemoryBackend.from(patternBytes(size, 1)));
    const local = new MemoryBackend(size);
    const buffer = stateBuffer();
    const open = () => {
      const state = ChunkState.over(buffer, identity);
      return new ManagedPipeline({
        remote,
        local,
        chunkSize,
        presence: state.presence,
        written: state.written,
        pending: state.pending,
        pull: false,
        push: { intervalMs: null },
        closeBackends: false,
      });
    };
    const first = open();
    first.start();
    await first.backend.readAt(new Uint8Array(4 * chunkSize), 0); // chunks 0..3 fetched
    await first.backend.writeAt(patternBytes(chunkSize, 9), 5 * chunkSize); // chunk 5 written, never pushed
    expect(remote.reads).toHaveLength(4);
    // Killed: no close, no push. The next run starts from the state the first left.
    const second = open();
    second.start();
    const all = new Uint8Array(8 * chunkSize);
    await second.backend.readAt(all, 0);
    expect(Buffer.compare(all.subarray(5 * chunkSize, 6 * chunkSize), patternBytes(chunkSize, 9))).toBe(0);
    // Only chunks 4, 6 and 7 were not cached.
    expect(remote.reads.slice(4).sort((a, b) => a - b)).toEqual([4, 6, 7].map((c) => c * chunkSize));
    expect(remote.writes).toEqual([]);
    await second.sync();
    expect(remote.writes).toEqual([5 * chunkSize]);
    await second.close();
    await first.close();
  });
});
