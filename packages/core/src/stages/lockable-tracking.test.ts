import { describe, expect, it } from "vitest";
import { MemoryBackend } from "../backends/memory.js";
import { InstrumentedBackend, patternBytes, settlesThisTurn } from "../testing/index.js";
import { LockableStage } from "./lockable.js";
import { TrackingStage } from "./tracking.js";

describe("LockableStage", () => {
  it("holds I/O while locked and releases it on unlock", async () => {
    const stage = new LockableStage(new MemoryBackend(4096));
    await stage.lock();
    const write = stage.writeAt(patternBytes(16, 1), 0);
    expect(await settlesThisTurn(write)).toBe(false);
    stage.unlock();
    await write;
  });

  it("lock() waits for requests already inside to finish", async () => {
    const inner = new InstrumentedBackend(new MemoryBackend(4096));
    inner.writeGate.close(); // the write is inside the stage, held
    const stage = new LockableStage(inner);
    let written = false;
    const write = stage.writeAt(patternBytes(16, 1), 0).then(() => {
      written = true;
    });
    const locking = stage.lock();
    expect(await settlesThisTurn(locking)).toBe(false);
    inner.writeGate.open();
    await locking;
    expect(written).toBe(true);
    stage.unlock();
    await write;
  });

  it("a waiter re-checks: a second lock before it runs holds it again", async () => {
    const stage = new LockableStage(new MemoryBackend(4096));
    await stage.lock();
    let done = false;
    const read = stage.readAt(new Uint8Array(4), 0).then(() => {
      done = true;
    });
    stage.unlock();
    await stage.lock();
    expect(await settlesThisTurn(read)).toBe(false);
    expect(done).toBe(false);
    stage.unlock();
    await read;
    expect(done).toBe(true);
  });
});

describe("TrackingStage", () => {
  it("records chunks written after track(), once each, in first-write order", async () => {
    const stage = new TrackingStage(new MemoryBackend(8 * 4096), 4096);
    await stage.writeAt(new Uint8Array(10), 0);
    stage.track();
    await stage.writeAt(new Uint8Array(10), 5 * 4096);
    await stage.writeAt(new Uint8Array(4096), 4096 + 100); // chunks 1 and 2
    await stage.writeAt(new Uint8Array(1), 5 * 4096 + 9);
    expect(stage.takeDirty()).toEqual([5, 1, 2]);
    await stage.writeAt(new Uint8Array(1), 7 * 4096);
    expect(stage.stopTracking()).toEqual([7]);
    await stage.writeAt(new Uint8Array(1), 0);
    expect(stage.tracking).toBe(false);
    expect(stage.takeDirty()).toEqual([]);
  });

  it("tracks trims and zero writes when the backend has them", async () => {
    const stage = new TrackingStage(new MemoryBackend(8 * 4096), 4096);
    stage.track();
    await stage.trim!(2 * 4096, 8192);
    await stage.writeZeroes!(6 * 4096, 1);
    expect(stage.stopTracking()).toEqual([2, 3, 6]);
  });
});
