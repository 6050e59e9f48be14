import { describe, expect, it } from "vitest";
import { memoryView } from "../backend.js";
import { MemoryBackend } from "../backends/memory.js";
import { ChunkBitmap } from "../chunk-bitmap.js";
import { InstrumentedBackend, patternBytes, settlesThisTurn, waitFor } from "../testing/index.js";
import { SyncedStage } from "./synced.js";

const chunkSize = 4096;

function setup(chunks = 8) {
  const size = chunks * chunkSize;
  const remoteData = patternBytes(size, 42);
  const remote = new InstrumentedBackend(MemoryBackend.from(remoteData));
  const local = new InstrumentedBackend(new MemoryBackend(size));
  const events: Array<[number, string]> = [];
  const written: number[] = [];
  const synced = new SyncedStage(remote, local, {
    chunkSize,
    onChunkLocal: (chunk, origin) => events.push([chunk, origin]),
    onWrite: (chunk) => written.push(chunk),
  });
  return { remote, local, synced, remoteData, events, written };
}

describe("SyncedStage", () => {
  it("fetches a chunk once, stores it locally, then serves it locally", async () => {
    const { remote, local, synced, remoteData, events } = setup();
    const back = new Uint8Array(chunkSize);
    await synced.readAt(back, chunkSize);
    expect(Buffer.compare(back, remoteData.subarray(chunkSize, 2 * chunkSize))).toBe(0);
    await synced.readAt(back, chunkSize);
    expect(remote.reads).toEqual([chunkSize]);
    expect(local.writes).toEqual([chunkSize]);
    expect(local.reads).toEqual([chunkSize]);
    expect(events).toEqual([[1, "fetch"]]);
    expect(synced.isLocal(1)).toBe(true);
  });

  it("single-flight: N concurrent readers of a remote chunk cause exactly one remote read", async () => {
    const { remote, synced, remoteData } = setup();
    remote.readGate.close(); // the first fetch stays in flight until every reader has asked
    const buffers = Array.from({ length: 50 }, () => new Uint8Array(chunkSize));
    const reads = Promise.all(buffers.map((buffer) => synced.readAt(buffer, 3 * chunkSize)));
    await waitFor(() => remote.readGate.waiting === 1, "the first reader's fetch to reach the remote");
    expect(await settlesThisTurn(reads)).toBe(false);
    expect(remote.readGate.waiting).toBe(1); // the other 49 joined it
    remote.readGate.open();
    await reads;
    expect(remote.reads).toEqual([3 * chunkSize]);
    for (const buffer of buffers) {
      expect(Buffer.compare(buffer, remoteData.subarray(3 * chunkSize, 4 * chunkSize))).toBe(0);
    }
  });

  it("a whole-chunk write makes the chunk local without fetching it", async () => {
    const { remote, synced, events, written } = setup();
    const data = patternBytes(chunkSize, 7);
    await synced.writeAt(data, 2 * chunkSize);
    const back = new Uint8Array(chunkSize);
    await synced.readAt(back, 2 * chunkSize);
    expect(Buffer.compare(back, data)).toBe(0);
    expect(remote.reads).toEqual([]);
    expect(events).toEqual([[2, "write"]]);
    expect(written).toEqual([2]);
  });

  it("a write during a fetch of the same chunk wins: the fetched bytes never overwrite it", async () => {
    const { remote, synced } = setup();
    remote.readGate.close();
    const data = patternBytes(chunkSize, 8);
    const read = synced.readAt(new Uint8Array(chunkSize), 0);
    await waitFor(() => remote.readGate.waiting === 1, "the fetch of chunk 0 to be in flight");
    const write = synced.writeAt(data, 0);
    expect(await settlesThisTurn(write)).toBe(false); // it waits for the fetch
    remote.readGate.open(); // the fetched bytes land after the write was issued
    await Promise.all([read, write]);
    const back = new Uint8Array(chunkSize);
    await synced.readAt(back, 0);
    expect(Buffer.compare(back, data)).toBe(0);
  });

  it("claimRun fetches consecutive remote chunks with one read, stops at a local one, and a write into the run wins", async () => {
    const { remote, synced, remoteData, events } = setup();
    await synced.readAt(new Uint8Array(chunkSize), 5 * chunkSize); // chunk 5 is local
    remote.reads.length = 0;
    remote.readGate.close();
    const run = synced.claimRun(1, 16);
    expect(run.count).toBe(4); // 1, 2, 3, 4: stops before local chunk 5
    expect(synced.claimRun(2, 16)).toMatchObject({ count: 0 }); // already claimed
    const data = patternBytes(chunkSize, 9);
    await waitFor(() => remote.readGate.waiting === 1, "the run's read to be in flight");
    const write = synced.writeAt(data, 3 * chunkSize);
    expect(await settlesThisTurn(write)).toBe(false); // it waits for the run
    remote.readGate.open();
    await Promise.all([run.done, write]);
    expect(remote.reads).toEqual([chunkSize]);
    expect([1, 2, 3, 4].every((chunk) => synced.isLocal(chunk))).toBe(true);
    const back = new Uint8Array(5 * chunkSize);
    await synced.readAt(back.subarray(0, chunkSize), chunkSize);
    expect(Buffer.compare(back.subarray(0, chunkSize), remoteData.subarray(chunkSize, 2 * chunkSize))).toBe(
      0,
    );
    await synced.readAt(back.subarray(0, chunkSize), 3 * chunkSize);
    expect(Buffer.compare(back.subarray(0, chunkSize), data)).toBe(0); // the fetched bytes did not overwrite it
    expect(events.filter(([, origin]) => origin === "fetch").map(([chunk]) => chunk)).toEqual([
      5, 1, 2, 3, 4,
    ]);
    expect(synced.claimRun(5, 4)).toMatchObject({ count: 0 });
  });

  it("ensureLocalForReader fetches over the demand connection and reports the miss; ensureLocal uses the background one", async () => {
    const size = 8 * chunkSize;
    const shared = MemoryBackend.from(patternBytes(size, 3));
    const demand = new InstrumentedBackend(shared);
    const background = new InstrumentedBackend(shared);
    const misses: number[] = [];
    const synced = new SyncedStage(demand, new MemoryBackend(size), {
      chunkSize,
      background,
      onMiss: (chunk) => misses.push(chunk),
    });
    await synced.ensureLocalForReader(2);
    await synced.ensureLocal(5);
    await synced.ensureLocalForReader(5); // local already: nothing fetched, no miss
    expect(demand.reads).toEqual([2 * chunkSize]);
    expect(background.reads).toEqual([5 * chunkSize]);
    expect(misses).toEqual([2]);
    const back = new Uint8Array(chunkSize);
    await synced.readAt(back, 2 * chunkSize);
    expect(Buffer.compare(back, patternBytes(size, 3).subarray(2 * chunkSize, 3 * chunkSize))).toBe(0);
  });

  it("a reader overtakes a slow background run for its chunk without storing it; writes, native or not, still win over the run", async () => {
    const size = 8 * chunkSize;
    const shared = MemoryBackend.from(patternBytes(size, 4));
    const demand = new InstrumentedBackend(shared);
    const background = new InstrumentedBackend(shared);
    background.readGate.close(); // the run stays in flight until the test lets it land
    const chunksLocal: number[] = [];
    const local = new MemoryBackend(size);
    const synced = new SyncedStage(demand, local, {
      chunkSize,
      background,
      onChunkLocal: (chunk) => chunksLocal.push(chunk),
    });
    // A writer that stores into present chunks itself, as the FUSE server does, and asks the stage otherwise.
    const nativeWrite = async (data: Uint8Array, chunk: number) => {
      if (synced.isLocal(chunk)) memoryView(local, chunk * chunkSize, chunkSize)!.set(data);
      else await synced.writeAt(data, chunk * chunkSize);
    };
    const run = synced.claimRun(0, 8);
    await waitFor(() => background.readGate.waiting === 1, "the run's read to be in flight");
    const back = new Uint8Array(chunkSize);
    // Completes while the run is held: it did not wait for the run.
    await synced.readAt(back, 5 * chunkSize);
    expect(Buffer.compare(back, patternBytes(size, 4).subarray(5 * chunkSize, 6 * chunkSize))).toBe(0);
    expect(demand.reads).toEqual([5 * chunkSize]);
    // Still the run's: the run writes its bytes into the cache when it lands.
    expect(synced.isLocal(5)).toBe(false);
    // A second miss on the same run waits for it: walking a run must not fetch it twice.
    const second = synced.readAt(new Uint8Array(chunkSize), 6 * chunkSize);
    expect(await settlesThisTurn(second)).toBe(false);
    background.readGate.open();
    await second;
    expect(demand.reads).toEqual([5 * chunkSize]);
    expect(synced.isLocal(5)).toBe(true);
    const data = patternBytes(chunkSize, 11);
    const other = patternBytes(chunkSize, 12);
    const run2 = synced.claimRun(7, 1);
    // Not present: waits for the run, whose bytes land first.
    await Promise.all([run2.done, nativeWrite(other, 7)]);
    await Promise.all([run.done, nativeWrite(data, 5)]);
    for (const [chunk, expected] of [
      [5, data],
      [7, other],
    ] as const) {
      const after = new Uint8Array(chunkSize);
      await synced.readAt(after, chunk * chunkSize);
      expect(Buffer.compare(after, expected)).toBe(0);
    }
    expect(chunksLocal.filter((chunk) => chunk === 5)).toEqual([5]); // reported once
  });

  it("a slice's fault on a chunk a background run is fetching waits for the run (it has no buffer to overtake with)", async () => {
    const size = 4 * chunkSize;
    const shared = MemoryBackend.from(patternBytes(size, 6));
    const demand = new InstrumentedBackend(shared);
    const background = new InstrumentedBackend(shared);
    background.readGate.close();
    const synced = new SyncedStage(demand, new MemoryBackend(size), { chunkSize, background });
    const run = synced.claimRun(0, 4);
    await waitFor(() => background.readGate.waiting === 1, "the run's read to be in flight");
    const fault = synced.ensureLocalForReader(2);
    expect(await settlesThisTurn(fault)).toBe(false); // it waits for the run
    expect(demand.reads).toEqual([]);
    background.readGate.open();
    await fault;
    expect(synced.isLocal(2)).toBe(true);
    expect(demand.reads).toEqual([]);
    await run.done;
  });

  it("marks chunks in flight while a run or a single fetch is under way, and clears them after", async () => {
    const size = 8 * chunkSize;
    const remote = new InstrumentedBackend(MemoryBackend.from(patternBytes(size, 5)));
    remote.readGate.close();
    const inFlight = new ChunkBitmap(8);
    const synced = new SyncedStage(remote, new MemoryBackend(size), { chunkSize, inFlight });
    const run = synced.claimRun(1, 3);
    const read = synced.readAt(new Uint8Array(chunkSize), 6 * chunkSize);
    await waitFor(() => remote.readGate.waiting === 2, "the run and the read to be in flight");
    expect([...Array(8).keys()].filter((chunk) => inFlight.has(chunk))).toEqual([1, 2, 3, 6]);
    remote.readGate.open();
    await Promise.all([run.done, read]);
    expect(inFlight.cardinality()).toBe(0);
    expect([1, 2, 3, 6].every((chunk) => synced.isLocal(chunk))).toBe(true);
  });

  it("leaves a chunk whose in-flight bit native code holds to native code: runs stop before it, readers and writers wait", async () => {
    const size = 8 * chunkSize;
    const remote = new InstrumentedBackend(MemoryBackend.from(patternBytes(size, 6)));
    const local = new MemoryBackend(size);
    const inFlight = new ChunkBitmap(8);
    const events: number[] = [];
    const synced = new SyncedStage(remote, local, {
      chunkSize,
      inFlight,
      onChunkLocal: (chunk) => events.push(chunk),
    });
    expect(inFlight.set(3)).toBe(true); // "native code" claims chunk 3
    expect(synced.claimRun(3, 4)).toMatchObject({ count: 0 });
    const run = synced.claimRun(1, 4);
    expect(run.count).toBe(2); // 1 and 2: stops before the claimed chunk
    const remoteBytes = (chunk: number) =>
      patternBytes(size, 6).subarray(chunk * chunkSize, (chunk + 1) * chunkSize);
    /** What native code does when its fetch lands: store, mark present, give the bit back, report. */
    const land = (chunk: number) => {
      memoryView(local, chunk * chunkSize, chunkSize)!.set(remoteBytes(chunk));
      synced.presence.set(chunk);
      inFlight.clear(chunk);
      synced.landedNatively(chunk);
    };
    const back = new Uint8Array(chunkSize);
    const read = synced.readAt(back, 3 * chunkSize);
    // Held by native code: the reader neither finishes nor fetches the chunk itself.
    expect(await settlesThisTurn(read)).toBe(false);
    await run.done;
    expect(await settlesThisTurn(read)).toBe(false);
    expect(remote.reads).toEqual([chunkSize]);
    land(3);
    await read;
    expect(Buffer.compare(back, remoteBytes(3))).toBe(0);
    // A writer waits the same way, and its bytes come after the landed ones.
    expect(inFlight.set(5)).toBe(true);
    const data = patternBytes(chunkSize, 13);
    const write = synced.writeAt(data, 5 * chunkSize);
    expect(await settlesThisTurn(write)).toBe(false);
    land(5);
    await write;
    const after = new Uint8Array(chunkSize);
    await synced.readAt(after, 5 * chunkSize);
    expect(Buffer.compare(after, data)).toBe(0);
    expect(remote.reads).toEqual([chunkSize]); // only the run: nobody else fetched 3 or 5
    expect(events.sort()).toEqual([1, 2, 3, 5]);
    expect(inFlight.cardinality()).toBe(0);
  });

  it("markRemote makes the next read fetch again", async () => {
    const { remote, synced } = setup();
    await synced.readAt(new Uint8Array(chunkSize), 0);
    synced.markRemote([0]);
    expect(synced.isLocal(0)).toBe(false);
    await synced.readAt(new Uint8Array(chunkSize), 0);
    expect(remote.reads).toEqual([0, 0]);
    expect(() => synced.markRemote([99])).toThrow(/does not exist/);
  });

  it("a failed fetch reaches every waiter, leaves the chunk remote, and a later read retries", async () => {
    const { remote, synced, remoteData } = setup();
    remote.readGate.close();
    remote.failReads = 1;
    const reads = [0, 1, 2].map(() => synced.readAt(new Uint8Array(chunkSize), 0));
    await waitFor(() => remote.readGate.waiting === 1, "the shared fetch to be in flight");
    remote.readGate.open();
    for (const read of reads) await expect(read).rejects.toMatchObject({ code: "ERR_REMOTE_FAILED" });
    expect(synced.isLocal(0)).toBe(false);
    const back = new Uint8Array(chunkSize);
    await synced.readAt(back, 0);
    expect(Buffer.compare(back, remoteData.subarray(0, chunkSize))).toBe(0);
  });

  it("shares its presence bitmap", async () => {
    const presence = new ChunkBitmap(8);
    presence.set(5);
    const remote = MemoryBackend.from(patternBytes(8 * chunkSize, 1));
    const local = new MemoryBackend(8 * chunkSize);
    const synced = new SyncedStage(remote, local, { chunkSize, presence });
    const back = new Uint8Array(chunkSize).fill(1);
    // Chunk 5 is claimed present, so it is read from the (zero) local copy.
    await synced.readAt(back, 5 * chunkSize);
    expect(back.every((byte) => byte === 0)).toBe(true);
    await synced.ensureLocal(6);
    expect(presence.has(6)).toBe(true);
  });

  it("refuses a local backend smaller than the remote", () => {
    expect(() => new SyncedStage(new MemoryBackend(8192), new MemoryBackend(4096), { chunkSize })).toThrow(
      /smaller than the remote/,
    );
  });
});
