import * as fs from "node:fs";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  TapeDrive,
  tapeOperation,
  tapeOperationCode,
  tapePosition,
  tapeRead,
  tapeStatus,
  tapeWrite,
} from "../src/tape.js";
import { scratchDirectory } from "./helpers.js";

describe("tape ioctls", () => {
  let dir: string;
  beforeEach(() => {
    dir = scratchDirectory("tape");
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("uses the kernel's operation numbers", () => {
    // Values from <sys/mtio.h>, the same on every Linux architecture.
    expect(tapeOperationCode("writeFileMark")).toBe(5);
    expect(tapeOperationCode("rewind")).toBe(6);
    expect(tapeOperationCode("endOfMedia")).toBe(12);
    expect(tapeOperationCode("setBlockSize")).toBe(20);
    expect(tapeOperationCode("seek")).toBe(22);
    expect(() => tapeOperationCode("spin" as never)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }),
    );
  });

  it("fails with a typed ENOTTY error on something that is not a tape", async () => {
    const file = path.join(dir, "not-a-tape");
    fs.writeFileSync(file, "data");
    await using drive = await TapeDrive.open(file);
    const notSupported = { name: "R3mapError", code: "ERR_NOT_SUPPORTED", errno: "ENOTTY" };
    await expect(drive.rewind()).rejects.toMatchObject(notSupported);
    await expect(drive.seek(1234)).rejects.toMatchObject(notSupported);
    await expect(drive.status()).rejects.toMatchObject(notSupported);
    await expect(drive.position()).rejects.toMatchObject(notSupported);
    await expect(tapeOperation(drive.fd, "writeFileMark", -1)).rejects.toMatchObject({
      code: "ERR_INVALID_ARGUMENT",
    });
  });

  it("reads and writes records with one system call each, off the JavaScript thread", async () => {
    // A regular file takes read(2) and write(2) as a drive does; only the ioctls need a tape.
    const file = path.join(dir, "records");
    fs.writeFileSync(file, "");
    await using drive = await TapeDrive.open(file);
    const record = Buffer.alloc(4096, 0x3c);
    expect(await drive.write(record)).toBe(4096);
    expect(await tapeWrite(drive.fd, Buffer.alloc(4096, 0x3d))).toBe(4096);
    const back = new Uint8Array(4096);
    const reader = await TapeDrive.open(file, { readOnly: true });
    try {
      expect(await reader.read(back)).toBe(4096);
      expect(back.every((byte) => byte === 0x3c)).toBe(true);
      expect(await tapeRead(reader.fd, back)).toBe(4096);
      expect(back.every((byte) => byte === 0x3d)).toBe(true);
      // The end of data reads as 0 bytes, as a drive reports it.
      expect(await reader.read(back)).toBe(0);
      await expect(reader.write(record)).rejects.toMatchObject({ name: "R3mapError", errno: "EBADF" });
    } finally {
      await reader.close();
    }
    await expect(drive.blockSize()).rejects.toMatchObject({ code: "ERR_NOT_SUPPORTED", errno: "ENOTTY" });
  });

  it("fails with EBADF on a closed descriptor", async () => {
    await expect(tapeStatus(987654)).rejects.toMatchObject({ name: "R3mapError", errno: "EBADF" });
    await expect(tapePosition(987654)).rejects.toMatchObject({ errno: "EBADF" });
  });
});
