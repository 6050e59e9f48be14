import * as fs from "node:fs";
import * as path from "node:path";
import { patternBytes } from "@r3map/core/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SimulatedTape } from "../src/simulated-tape.js";
import { TapeBackend } from "../src/tape-backend.js";
import { TapeIndex } from "../src/tape-index.js";
import { logLines, openSimulated, scratchDirectory, seededRandom, shuffled } from "./helpers.js";

const BLOCK = 4096;

/** Writes blocks 0..count-1 (block b holds pattern b + 1) in a random order, which is their order on the tape, and syncs. */
async function writeShuffled(backend: TapeBackend, count: number, random: () => number): Promise<void> {
  for (const block of shuffled(
    Array.from({ length: count }, (_, i) => i),
    random,
  )) {
    await backend.writeAt(patternBytes(BLOCK, block + 1), block * BLOCK);
  }
  await backend.sync();
}

describe("tape backend", () => {
  let dir: string;
  const open: Array<{ close(): Promise<void> }> = [];
  beforeEach(() => {
    dir = scratchDirectory("backend");
  });
  afterEach(async () => {
    await Promise.allSettled(open.splice(0).map((backend) => backend.close()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function simulated(size: number, options: Parameters<typeof openSimulated>[2] = {}) {
    const opened = await openSimulated(dir, size, options);
    open.push(opened.backend);
    return opened;
  }

  it("reads many blocks in one pass of the head, in tape order, not a seek each", async () => {
    const seed = Date.now() % 100_000;
    const random = seededRandom(seed);
    const count = 256;
    const { backend, tape } = await simulated(count * BLOCK, { log: path.join(dir, "ops.log") });
    await writeShuffled(backend, count, random);
    const before = { ...tape.counters };
    fs.writeFileSync(path.join(dir, "ops.log"), "");

    // One request for every block (a pull's run): positions are a permutation of 0..255.
    const all = new Uint8Array(count * BLOCK);
    await backend.readAt(all, 0);
    for (let block = 0; block < count; block++) {
      const expected = patternBytes(BLOCK, block + 1);
      expect(
        Buffer.compare(all.subarray(block * BLOCK, (block + 1) * BLOCK), expected),
        `block ${block} (seed ${seed})`,
      ).toBe(0);
    }
    const reads = logLines(path.join(dir, "ops.log")).filter((line) => line.startsWith("read "));
    const positions = reads.map((line) => Number(line.split(" ")[1]));
    expect(positions, `seed ${seed}`).toEqual([...positions].sort((a, b) => a - b));
    expect(tape.counters.recordsRead - before.recordsRead).toBe(count);
    // From the end of data back to block 0 once, then every record follows the one before it.
    expect(tape.counters.seeks - before.seeks, `seed ${seed}`).toBe(1);
  });

  it("sorts reads that arrive together from separate callers, seeking only across gaps", async () => {
    const seed = Date.now() % 100_000;
    const random = seededRandom(seed);
    const count = 512;
    const { backend, tape } = await simulated(count * BLOCK, { log: path.join(dir, "ops.log") });
    await writeShuffled(backend, count, random);
    const wanted = shuffled(
      Array.from({ length: count }, (_, i) => i),
      random,
    ).slice(0, 64);
    const seeksBefore = tape.counters.seeks;
    fs.writeFileSync(path.join(dir, "ops.log"), "");
    // 64 callers at once (a reader's concurrent misses), in a random order.
    await Promise.all(
      wanted.map(async (block) => {
        const back = new Uint8Array(BLOCK);
        await backend.readAt(back, block * BLOCK);
        expect(Buffer.compare(back, patternBytes(BLOCK, block + 1)), `block ${block} (seed ${seed})`).toBe(0);
      }),
    );
    const positions = logLines(path.join(dir, "ops.log"))
      .filter((line) => line.startsWith("read "))
      .map((line) => Number(line.split(" ")[1]));
    expect(positions, `seed ${seed}`).toEqual([...positions].sort((a, b) => a - b));
    // One seek from the end of data to the first; after that a seek only across a gap wider than 64
    // records — narrower ones are spaced over (MTFSR), the drive streaming on.
    const sorted = wanted.map((block) => backend.positionOf(block)!).sort((a, b) => a - b);
    const wide = sorted.filter((position, i) => i > 0 && position - (sorted[i - 1]! + 1) > 64).length;
    expect(tape.counters.seeks - seeksBefore, `seed ${seed}`).toBe(1 + wide);
    const skipped = sorted.slice(1).reduce((total, position, i) => {
      const gap = position - (sorted[i]! + 1);
      return total + (gap <= 64 ? gap : 0);
    }, 0);
    expect(backend.counters.recordsSkipped, `seed ${seed}`).toBe(skipped);
  });

  it("without spacing, seeks across every gap, still in one ascending pass", async () => {
    const { backend, tape } = await simulated(64 * BLOCK, { skipWithin: 0 });
    for (const block of [9, 2, 7, 4, 0, 5])
      await backend.writeAt(patternBytes(BLOCK, block + 1), block * BLOCK);
    const seeks = tape.counters.seeks;
    // Positions: 9→0, 2→1, 7→2, 4→3, 0→4, 5→5. Blocks 0, 4, 7, 9 sit at 4, 3, 2, 0: runs [0] [2 3 4].
    await Promise.all([0, 4, 7, 9].map((block) => backend.readAt(new Uint8Array(BLOCK), block * BLOCK)));
    expect(tape.counters.seeks - seeks).toBe(2);
  });

  it("reads blocks never written as zeros without touching the tape", async () => {
    const { backend, tape } = await simulated(64 * BLOCK);
    await backend.writeAt(patternBytes(BLOCK, 5), 3 * BLOCK);
    const before = { ...tape.counters };
    const back = new Uint8Array(8 * BLOCK).fill(0xee);
    await backend.readAt(back.subarray(0, 2 * BLOCK), 0);
    await backend.readAt(back.subarray(4 * BLOCK), 10 * BLOCK);
    expect(back.subarray(0, 2 * BLOCK).every((byte) => byte === 0)).toBe(true);
    expect(back.subarray(4 * BLOCK).every((byte) => byte === 0)).toBe(true);
    expect(tape.counters).toEqual(before);
  });

  it("appends at the end of data, once per batch of writes after reads (MTEOM), positions from tell", async () => {
    const { backend, tape } = await simulated(16 * BLOCK, { log: path.join(dir, "ops.log") });
    await Promise.all([0, 1, 2].map((block) => backend.writeAt(patternBytes(BLOCK, block), block * BLOCK)));
    expect([0, 1, 2].map((block) => backend.positionOf(block))).toEqual([0, 1, 2]);
    await backend.readAt(new Uint8Array(BLOCK), 0);
    // Rewriting block 0 appends a new record; the old one stays on tape, unreachable.
    await Promise.all([0, 5].map((block) => backend.writeAt(patternBytes(BLOCK, 10 + block), block * BLOCK)));
    expect(backend.positionOf(0)).toBe(3);
    expect(backend.positionOf(5)).toBe(4);
    expect(tape.endOfData).toBe(5);
    const ops = logLines(path.join(dir, "ops.log"));
    expect(ops).toEqual(["write 0", "write 1", "write 2", "seek 0", "read 0", "eod 3", "write 3", "write 4"]);
    const back = new Uint8Array(BLOCK);
    await backend.readAt(back, 0);
    expect(Buffer.compare(back, patternBytes(BLOCK, 10))).toBe(0);
  });

  it("puts positions in the index only after the tape was flushed, so the index never points past the data", async () => {
    const size = 16 * BLOCK;
    const { backend, tape } = await simulated(size, { log: path.join(dir, "ops.log") });
    await backend.writeAt(patternBytes(BLOCK, 1), 0);
    await backend.writeAt(patternBytes(BLOCK, 2), BLOCK);
    // Not synced: the index does not know the records yet (a crash now loses them, and nothing points at them).
    expect(backend.index.get(0)).toBeUndefined();
    await backend.sync();
    expect(logLines(path.join(dir, "ops.log")).at(-1)).toBe("flush");
    expect(backend.index.get(0)).toBe(0);
    expect(backend.index.get(1)).toBe(1);

    // A flush that fails leaves the index as it was; the positions stay known and are committed later.
    await backend.writeAt(patternBytes(BLOCK, 3), 2 * BLOCK);
    const flush = tape.flush.bind(tape);
    tape.flush = async () => {
      throw Object.assign(new Error("injected: the drive did not take the flush"), { code: "EIO" });
    };
    await expect(backend.sync()).rejects.toThrow("injected");
    expect(backend.index.get(2)).toBeUndefined();
    const back = new Uint8Array(BLOCK);
    await backend.readAt(back, 2 * BLOCK);
    expect(Buffer.compare(back, patternBytes(BLOCK, 3))).toBe(0);
    tape.flush = flush;
    await backend.sync();
    expect(backend.index.get(2)).toBe(2);
    await backend.close();

    // A writer that dies before syncing leaves records on the tape that no index entry names.
    const again = await openSimulated(dir, size);
    await again.backend.writeAt(patternBytes(BLOCK, 4), 3 * BLOCK);
    await again.tape.close(); // killed: no sync, no commit
    await again.backend.index.close();
    const third = await simulated(size);
    expect(third.tape.endOfData).toBe(4);
    expect(third.backend.positionOf(3)).toBeUndefined();
    await third.backend.readAt(back, 3 * BLOCK);
    expect(back.every((byte) => byte === 0)).toBe(true);
    await third.backend.writeAt(patternBytes(BLOCK, 5), 3 * BLOCK);
    expect(third.backend.positionOf(3)).toBe(4);
  });

  it("refuses a non-empty tape whose index is missing, instead of reading zeros", async () => {
    const { backend } = await simulated(16 * BLOCK);
    await backend.writeAt(patternBytes(BLOCK, 1), 0);
    await backend.close();
    fs.rmSync(path.join(dir, "tapisk.db"));
    fs.rmSync(path.join(dir, "tapisk.db-lock"), { force: true });
    await expect(openSimulated(dir, 16 * BLOCK)).rejects.toMatchObject({
      name: "R3mapError",
      code: "ERR_INVALID_ARGUMENT",
      message: expect.stringMatching(/holds 1 records, but the index .*tapisk\.db does not exist/),
    });
    expect(fs.existsSync(path.join(dir, "tapisk.db"))).toBe(false);
  });

  it("refuses a drive in variable-block mode, telling the user to run mt setblk", async () => {
    const tape = SimulatedTape.open(path.join(dir, "tape.img"), { blockSize: 0 });
    await expect(
      TapeBackend.open(tape, { size: BLOCK, index: path.join(dir, "tapisk.db") }),
    ).rejects.toMatchObject({
      code: "ERR_NOT_SUPPORTED",
      message: expect.stringContaining("setblk 4096"),
    });
  });

  it("refuses an index made for another layout, or one that points past the end of the tape", async () => {
    const { backend } = await simulated(16 * BLOCK);
    await backend.writeAt(patternBytes(BLOCK, 1), 0);
    await backend.close();
    await expect(openSimulated(dir, 32 * BLOCK)).rejects.toMatchObject({
      code: "ERR_INVALID_ARGUMENT",
      message: expect.stringContaining("pass the --size it was made with"),
    });
    fs.rmSync(path.join(dir, "tape.img"));
    await expect(openSimulated(dir, 16 * BLOCK)).rejects.toMatchObject({
      code: "ERR_INVALID_ARGUMENT",
      message: expect.stringContaining("not the tape the index was written with"),
    });
  });

  it("pads a short last block to a whole record and refuses partial blocks", async () => {
    const size = 3 * BLOCK + 100;
    const { backend } = await simulated(size);
    const tail = patternBytes(100, 9);
    await backend.writeAt(tail, 3 * BLOCK);
    const back = new Uint8Array(100);
    await backend.readAt(back, 3 * BLOCK);
    expect(Buffer.compare(back, tail)).toBe(0);
    await expect(backend.readAt(new Uint8Array(100), 0)).rejects.toMatchObject({ code: "ERR_MISALIGNED" });
  });

  it("keeps an index of its own: block → position, in one transaction per commit", async () => {
    const file = path.join(dir, "index.db");
    const index = TapeIndex.open(file, { blockSize: BLOCK, size: 1 << 20 });
    expect(index.existed).toBe(false);
    index.commit([
      [7, 0],
      [3, 1],
      [7, 2],
    ]);
    expect(index.get(7)).toBe(2);
    expect(index.get(3)).toBe(1);
    expect(index.get(4)).toBeUndefined();
    expect(index.highestPosition).toBe(2);
    await index.close();
    const again = TapeIndex.open(file, { blockSize: BLOCK, size: 1 << 20 }, { readOnly: true });
    expect(again.existed).toBe(true);
    expect(again.count).toBe(2);
    expect(() => again.commit([[1, 3]])).toThrow(expect.objectContaining({ code: "ERR_READ_ONLY" }));
    await again.close();
  });
});
