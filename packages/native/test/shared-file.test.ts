import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mapSharedFile, syncSharedFile } from "../src/shared-file.js";
import { scratchDirectory } from "./helpers.js";

describe("mapSharedFile", () => {
  let dir: string;
  beforeEach(() => {
    dir = scratchDirectory("shared-file");
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("is a SharedArrayBuffer over the file's bytes, grown to the length asked for", () => {
    const file = path.join(dir, "state");
    fs.writeFileSync(file, Buffer.from([1, 2, 3, 4]));
    const buffer = mapSharedFile(file, 8192);
    expect(buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(fs.statSync(file).size).toBe(8192);
    const bytes = new Uint8Array(buffer);
    expect([...bytes.subarray(0, 5)]).toEqual([1, 2, 3, 4, 0]);
    Atomics.or(new Int32Array(buffer), 1, 0x0100);
    syncSharedFile(buffer);
    expect(fs.readFileSync(file).readInt32LE(4)).toBe(0x0100);
  });

  it("keeps what was stored when the process is killed with SIGKILL", () => {
    const file = path.join(dir, "state");
    // A child maps the file, sets bits without syncing, and kills itself.
    const script = `
      const { mapSharedFile } = await import(${JSON.stringify(path.resolve(__dirname, "../dist/index.js"))});
      const words = new Int32Array(mapSharedFile(${JSON.stringify(file)}, 4096, { create: true }));
      Atomics.or(words, 3, 0x5a5a);
      process.kill(process.pid, "SIGKILL");
    `;
    const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    expect(child.signal, child.stderr).toBe("SIGKILL");
    expect(fs.readFileSync(file).readInt32LE(12)).toBe(0x5a5a);
  });

  it("refuses a missing file unless asked to create it, with a typed error", () => {
    expect(() => mapSharedFile(path.join(dir, "missing"), 4096)).toThrow(
      expect.objectContaining({ name: "R3mapError", errno: "ENOENT" }),
    );
    expect(() => mapSharedFile(path.join(dir, "x"), 0, { create: true })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }),
    );
  });
});
