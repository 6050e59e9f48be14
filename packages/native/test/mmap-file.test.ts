/** mmap of a file: write through the Buffer, msync, read back with fs; lock; close detaches. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MappedFile, mapFile } from "../src/mmap-file.js";

let directory: string;
beforeEach(() => {
  directory = fs.mkdtempSync(path.join(os.tmpdir(), "r3map-mmap-"));
});
afterEach(() => {
  fs.rmSync(directory, { recursive: true, force: true });
});

describe("mapFile", () => {
  it("writes through the Buffer reach the file after sync()", () => {
    const file = path.join(directory, "data.bin");
    fs.writeFileSync(file, Buffer.alloc(1024 * 1024, 1));
    using mapped = mapFile(file, { writable: true });
    expect(mapped.length).toBe(1024 * 1024);
    expect(mapped.buffer[12345]).toBe(1);
    mapped.buffer.write("hello r3map", 4096 * 3 + 5);
    mapped.buffer.fill(9, 700_000, 700_100);
    mapped.sync(4096 * 3, 100);
    mapped.sync();
    const back = fs.readFileSync(file);
    expect(back.toString("utf8", 4096 * 3 + 5, 4096 * 3 + 16)).toBe("hello r3map");
    expect(back.subarray(700_000, 700_100).every((byte) => byte === 9)).toBe(true);
    expect(back[699_999]).toBe(1);
    const part = mapped.view(8192, 4096);
    part.fill(7);
    mapped.sync(8192, 4096);
    expect(
      fs
        .readFileSync(file)
        .subarray(8192, 8192 + 4096)
        .every((byte) => byte === 7),
    ).toBe(true);
    expect(() => mapped.view(1024 * 1024 - 10, 20)).toThrow(
      expect.objectContaining({ code: "ERR_OUT_OF_RANGE" }),
    );
  });

  it("maps an fd at an offset, read-only, and sees writes made with fs", () => {
    const file = path.join(directory, "offset.bin");
    fs.writeFileSync(file, Buffer.alloc(3 * 4096, 0));
    const fd = fs.openSync(file, "r+");
    try {
      using mapped = MappedFile.map(fd, { offset: 4096, length: 4096 });
      fs.writeSync(fd, Buffer.from("shared page cache"), 0, 17, 4096 + 10);
      expect(mapped.buffer.toString("utf8", 10, 27)).toBe("shared page cache");
    } finally {
      fs.closeSync(fd);
    }
  });

  it("lock/unlock, and close() detaches the Buffer instead of leaving a dangling pointer", () => {
    const file = path.join(directory, "lock.bin");
    fs.writeFileSync(file, Buffer.alloc(64 * 1024, 3));
    const mapped = mapFile(file, { writable: true, shared: true });
    mapped.lock();
    mapped.unlock();
    const { buffer } = mapped;
    mapped.close();
    mapped.close();
    expect(buffer.length).toBe(0);
    expect(() => buffer.readUInt8(0)).toThrow(RangeError);
    expect(() => mapped.sync()).toThrow(expect.objectContaining({ code: "ERR_CLOSED" }));
  });

  it("a private mapping keeps writes away from the file; bad input is a typed error", () => {
    const file = path.join(directory, "private.bin");
    fs.writeFileSync(file, Buffer.alloc(4096, 4));
    using mapped = mapFile(file, { writable: true, shared: false });
    mapped.buffer[0] = 99;
    mapped.sync();
    expect(fs.readFileSync(file)[0]).toBe(4);
    expect(() => mapFile(file, { offset: 100 })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }),
    );
    expect(() => mapFile(path.join(directory, "missing"))).toThrow(
      expect.objectContaining({ code: "ERR_IO", errno: "ENOENT" }),
    );
    fs.writeFileSync(path.join(directory, "empty"), "");
    expect(() => mapFile(path.join(directory, "empty"))).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }),
    );
  });
});
