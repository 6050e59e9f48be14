import { describe, expect, it } from "vitest";
import { MemoryBackend } from "../backends/memory.js";
import { SyncedStage } from "../stages/synced.js";
import { InstrumentedBackend, nextTurn, patternBytes, settlesThisTurn, waitFor } from "../testing/index.js";
import { Puller } from "./puller.js";

const chunkSize = 4096;

function setup(chunks: number) {
  const remote = new InstrumentedBackend(MemoryBackend.from(patternBytes(chunks * chunkSize, 3)));
  const local = new MemoryBackend(chunks * chunkSize);
  const synced = new SyncedStage(remote, local, { chunkSize });
  return { remote, local, synced };
}

const order = (remote: InstrumentedBackend) => remote.reads.map((offset) => offset / chunkSize);

describe("Puller", () => {
  it("pulls every chunk, including a short trailing one, and finishes after finalize", async () => {
    const remote = new InstrumentedBackend(MemoryBackend.from(patternBytes(5 * chunkSize + 10, 3)));
    const synced = new SyncedStage(remote, new MemoryBackend(5 * chunkSize + 10), { chunkSize });
    const puller = new Puller(synced, { workers: 3 });
    puller.start();
    await waitFor(() => synced.presence.cardinality() === 6, "every chunk to be pulled");
    expect(await settlesThisTurn(puller.done)).toBe(false); // not finalized yet
    puller.finalize([]);
    await puller.done;
    expect(order(remote).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it("runs no more workers than there are chunks, however many are asked for", async () => {
    const { synced } = setup(64);
    // Uncapped, this many workers spun a core and ran out of memory before the first pull.
    const puller = new Puller(synced, { workers: 100_000_000 });
    puller.start();
    expect(puller.workers).toBe(64);
    puller.finalize([]);
    await puller.done;
    expect(synced.presence.cardinality()).toBe(64);
  });

  it("ramps its runs from firstRunChunks, doubling up to runChunks", async () => {
    const { remote, synced } = setup(64);
    const puller = new Puller(synced, { workers: 1, runChunks: 16, firstRunChunks: 2 });
    puller.start();
    puller.finalize([]);
    await puller.done;
    // Runs of 2, 4, 8, 16, 16, 16 and the 2 chunks left.
    expect(order(remote)).toEqual([0, 2, 6, 14, 30, 46, 62]);
    expect(synced.presence.cardinality()).toBe(64);
  });

  it("pulls in priority order with one worker", async () => {
    const { remote, synced } = setup(6);
    const puller = new Puller(synced, {
      workers: 1,
      priority: (chunk) => (chunk % 2 === 0 ? 10 : 0) - chunk,
    });
    puller.start();
    puller.finalize();
    await puller.done;
    expect(order(remote)).toEqual([0, 2, 4, 1, 3, 5]);
  });

  it("lets priorities change while running (a demand read jumps the queue)", async () => {
    const { remote, synced } = setup(20);
    remote.readGate.close();
    const puller = new Puller(synced, { workers: 1 });
    puller.start();
    // The worker is pulling chunk 0 of its sweep, held, when the priorities change.
    await waitFor(() => remote.readGate.waiting === 1, "the sweep's first pull");
    puller.prioritize(17, 1000);
    puller.prioritize(15, 999);
    puller.finalize();
    remote.readGate.open();
    await puller.done;
    const pulled = order(remote);
    expect(pulled.slice(0, 4)).toEqual([0, 17, 15, 1]);
    expect(pulled.indexOf(17)).toBeLessThan(pulled.indexOf(3));
    expect(pulled.indexOf(17)).toBeLessThan(pulled.indexOf(15));
    expect(pulled.indexOf(15)).toBeLessThan(pulled.indexOf(4));
    expect(new Set(pulled).size).toBe(20);
  });

  it("skips chunks that became local some other way", async () => {
    const { remote, synced } = setup(4);
    await synced.writeAt(new Uint8Array(chunkSize), 2 * chunkSize);
    await synced.readAt(new Uint8Array(chunkSize), 0);
    const puller = new Puller(synced, { workers: 2 });
    puller.start();
    puller.finalize();
    await puller.done;
    expect(order(remote).sort()).toEqual([0, 1, 3]);
  });

  it("finalize(dirty) re-pulls dirty chunks first", async () => {
    const { remote, synced } = setup(8);
    remote.readGate.allow(4); // chunks 0-3 land, chunk 4 is held in flight
    const puller = new Puller(synced, { workers: 1 });
    puller.start();
    await waitFor(() => remote.readGate.waiting === 1, "the pull of chunk 4");
    expect(synced.presence.cardinality()).toBe(4);
    synced.markRemote([1, 0]);
    puller.finalize([1, 0]);
    remote.readGate.open();
    await puller.done;
    const pulled = order(remote);
    const afterFinalize = pulled.slice(pulled.lastIndexOf(1));
    expect(afterFinalize.slice(0, 2)).toEqual([1, 0]);
    expect(pulled).toEqual([0, 1, 2, 3, 4, 1, 0, 5, 6, 7]);
    expect(synced.presence.cardinality()).toBe(8);
  });

  it("retries a failing chunk and succeeds", async () => {
    const { remote, synced } = setup(3);
    remote.failReads = 2;
    const puller = new Puller(synced, { workers: 1, retry: { attempts: 3, backoffMs: 1 } });
    puller.start();
    puller.finalize();
    await puller.done;
    expect(synced.presence.cardinality()).toBe(3);
  });

  it("rejects done with the first error once retries are exhausted, and stops", async () => {
    const { remote, synced } = setup(10);
    remote.down = true;
    const puller = new Puller(synced, { workers: 2, retry: { attempts: 2, backoffMs: 1 } });
    puller.start();
    puller.finalize();
    await expect(puller.done).rejects.toMatchObject({ code: "ERR_REMOTE_UNREACHABLE" });
    await puller.close();
  });

  it("close() stops the workers and rejects done with ERR_CLOSED", async () => {
    const { remote, synced } = setup(50);
    remote.readGate.close();
    const puller = new Puller(synced, { workers: 2 });
    puller.start();
    await waitFor(() => remote.readGate.waiting === 2, "both workers' first pulls");
    const closing = puller.close();
    // close() lets the pulls under way finish, and starts no other.
    expect(await settlesThisTurn(closing)).toBe(false);
    remote.readGate.open();
    await closing;
    const pulledAtClose = remote.reads.length;
    await expect(puller.done).rejects.toMatchObject({ code: "ERR_CLOSED" });
    // The workers have returned: nothing is left that could pull.
    await nextTurn();
    expect(remote.reads.length).toBe(pulledAtClose);
    expect(pulledAtClose).toBe(2);
    expect(synced.presence.cardinality()).toBe(2);
  });

  it("refuses zero workers instead of silently not pulling", () => {
    const { synced } = setup(1);
    expect(() => new Puller(synced, { workers: 0 })).toThrow(/at least 1/);
  });
});
