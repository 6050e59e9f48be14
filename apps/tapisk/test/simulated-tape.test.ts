import * as fs from "node:fs";
import * as path from "node:path";
import { patternBytes } from "@r3map/core/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseSimulatedDrive } from "../src/open-tape.js";
import { SimulatedTape } from "../src/simulated-tape.js";
import { logLines, scratchDirectory } from "./helpers.js";

const BLOCK = 512;

describe("simulated tape (MTIO semantics)", () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = scratchDirectory("sim");
    file = path.join(dir, "tape.img");
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("stores fixed-size records, reads them back after a seek, and ends the data where it last wrote", async () => {
    await using tape = SimulatedTape.open(file, { blockSize: BLOCK, log: path.join(dir, "ops.log") });
    for (let i = 0; i < 4; i++) await tape.writeRecord(patternBytes(BLOCK, i + 1));
    expect(await tape.tell()).toBe(4);
    expect(tape.endOfData).toBe(4);
    await tape.seek(1);
    const record = new Uint8Array(BLOCK);
    await tape.readRecord(record);
    expect(Buffer.compare(record, patternBytes(BLOCK, 2))).toBe(0);
    expect(await tape.tell()).toBe(2);
    // Writing in the middle ends the data there: records 3 and beyond are gone.
    await tape.writeRecord(patternBytes(BLOCK, 9));
    expect(tape.endOfData).toBe(3);
    expect(fs.statSync(file).size).toBe(3 * BLOCK);
    await expect(tape.readRecord(record)).rejects.toMatchObject({
      code: "ERR_IO",
      message: expect.stringContaining("end of data"),
    });
    await expect(tape.seek(4)).rejects.toMatchObject({
      code: "ERR_IO",
      message: expect.stringContaining("blank check"),
    });
    expect(await tape.seekEndOfData()).toEqual({ position: 3, dataRecords: 3 });
    await expect(tape.writeRecord(new Uint8Array(BLOCK + 1))).rejects.toMatchObject({
      code: "ERR_INVALID_ARGUMENT",
    });
    expect(logLines(path.join(dir, "ops.log"))).toEqual([
      "write 0",
      "write 1",
      "write 2",
      "write 3",
      "seek 1",
      "read 1",
      "write 2",
    ]);
  });

  it("counts seeks that move the head and charges the configured costs", async () => {
    await using tape = SimulatedTape.open(file, {
      blockSize: BLOCK,
      seekMs: 3,
      seekMsPerBlock: 0.5,
      recordMs: 0.25,
    });
    for (let i = 0; i < 4; i++) await tape.writeRecord(new Uint8Array(BLOCK));
    await tape.seek(4); // already there: no movement, no cost
    await tape.seek(0);
    await tape.readRecord(new Uint8Array(BLOCK));
    await tape.seekEndOfData();
    expect(tape.counters).toMatchObject({ seeks: 2, recordsRead: 1, recordsWritten: 4 });
    // Two seeks (4 → 0 and 1 → 4: 7 blocks travelled) and five records.
    expect(tape.counters.costMs).toBeCloseTo(2 * 3 + 7 * 0.5 + 5 * 0.25);
  });

  it("cuts off a record torn by a crash mid-write, as a drive never shows half a record", async () => {
    fs.writeFileSync(file, Buffer.alloc(2 * BLOCK + 100, 1));
    await using tape = SimulatedTape.open(file, { blockSize: BLOCK });
    expect(tape.endOfData).toBe(2);
    expect(fs.statSync(file).size).toBe(2 * BLOCK);
  });

  it("refuses writes when read-only (write-protected)", async () => {
    fs.writeFileSync(file, "");
    await using tape = SimulatedTape.open(file, { blockSize: BLOCK, readOnly: true });
    await expect(tape.writeRecord(new Uint8Array(BLOCK))).rejects.toMatchObject({ code: "ERR_READ_ONLY" });
  });

  it("is named by a sim: drive string with its parameters", () => {
    expect(parseSimulatedDrive("sim:/tmp/t.img?block-size=512&seek-ms=20&log=/tmp/l")).toEqual({
      path: "/tmp/t.img",
      options: { blockSize: 512, seekMs: 20, seekMsPerBlock: 0, recordMs: 0, log: "/tmp/l" },
    });
    expect(parseSimulatedDrive("sim:///tmp/t.img").options.blockSize).toBe(4096);
    expect(() => parseSimulatedDrive("sim:relative.img")).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }),
    );
    expect(() => parseSimulatedDrive("sim:/t.img?seek=1")).toThrow(/unknown parameter "seek"/);
    expect(() => parseSimulatedDrive("sim:/t.img?seek-ms=-1")).toThrow(/non-negative/);
  });
});
