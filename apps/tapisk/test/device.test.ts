import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { patternBytes } from "@r3map/core/testing";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { TapeIndex } from "../src/tape-index.js";
import { logLines, scratchDirectory } from "./helpers.js";
import {
  cleanUp,
  loopsUnder,
  mountsUnder,
  requireBuild,
  runTapisk,
  TapiskProcess,
} from "./tapisk-process.js";

const BLOCK = 4096;
const SIZE = 64 * 1024 * 1024;

const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

describe("tapisk as a block device (simulated tape, ext4, restarts)", () => {
  let dir: string;
  beforeAll(() => requireBuild());
  beforeEach(() => {
    dir = scratchDirectory("device");
    fs.mkdirSync(path.join(dir, "mnt"));
    fs.mkdirSync(path.join(dir, "fs"));
  });
  afterEach(async () => {
    await cleanUp(dir);
  });

  /** The CLI arguments for this test's tape, index and cache; `log` names the simulated tape's operation log. */
  function args(options: { log?: string; cache?: string; extra?: string[] } = {}): string[] {
    const log = options.log ? `&log=${path.join(dir, options.log)}` : "";
    return [
      "--drive",
      `sim:${path.join(dir, "tape.img")}?block-size=${BLOCK}${log}`,
      "--size",
      String(SIZE),
      "--index",
      path.join(dir, "tapisk.db"),
      "--cache",
      path.join(dir, options.cache ?? "cache.img"),
      "--mount-point",
      path.join(dir, "mnt"),
      "--push-workers",
      "16",
      ...(options.extra ?? []),
    ];
  }

  function mountExt4(device: string): string {
    const target = path.join(dir, "fs");
    execFileSync("mount", ["-t", "ext4", device, target]);
    return target;
  }

  it("keeps ext4 files across SIGINT and a restart with the same index and cache; fsck is clean", async () => {
    const first = await TapiskProcess.start(args());
    execFileSync("mkfs.ext4", ["-q", "-F", first.device.path]);
    const fsDir = mountExt4(first.device.path);
    const files = new Map<string, string>();
    for (let i = 0; i < 8; i++) {
      const data = patternBytes(512 * 1024 + i * 4099, 100 + i);
      fs.writeFileSync(path.join(fsDir, `file-${i}`), data);
      files.set(`file-${i}`, sha(data));
    }
    execFileSync("umount", [fsDir]);
    expect(await first.stop("SIGINT")).toBe(0);
    expect(fs.statSync(path.join(dir, "tape.img")).size).toBeGreaterThan(0);

    const second = await TapiskProcess.start(args());
    const again = mountExt4(second.device.path);
    for (const [name, digest] of files)
      expect(sha(fs.readFileSync(path.join(again, name))), name).toBe(digest);
    execFileSync("umount", [again]);
    execFileSync("e2fsck", ["-fn", second.device.path], { stdio: "pipe" });
    expect(await second.stop("SIGINT")).toBe(0);
  });

  it("after a SIGKILL in the middle of writing: fsck is clean and every file whose write was fsynced is intact", async () => {
    const first = await TapiskProcess.start(args({ extra: ["--push-interval", "1s"] }));
    execFileSync("mkfs.ext4", ["-q", "-F", first.device.path]);
    const fsDir = mountExt4(first.device.path);
    // A writer in its own process: each file is written and fsynced, then its name goes to a journal
    // outside the device — the files named there were acknowledged as durable.
    const journal = path.join(dir, "fsynced.txt");
    const writer = spawn(
      process.execPath,
      [
        "-e",
        `
        const fs = require("node:fs");
        const [dir, journal] = process.argv.slice(1);
        for (let i = 0; ; i++) {
          const data = Buffer.alloc(256 * 1024 + i * 4099, i % 251);
          for (let j = 0; j + 4 <= data.length; j += 4096) data.writeUInt32LE(i * 100003 + j, j);
          const fd = fs.openSync(dir + "/file-" + i, "w");
          fs.writeSync(fd, data);
          fs.fsyncSync(fd);
          fs.closeSync(fd);
          const d = fs.openSync(dir, "r"); fs.fsyncSync(d); fs.closeSync(d);
          fs.appendFileSync(journal, i + " " + require("node:crypto").createHash("sha256").update(data).digest("hex") + "\\n");
        }`,
        fsDir,
        journal,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let writerErrors = "";
    writer.stderr!.on("data", (data) => {
      writerErrors += data;
    });
    try {
      const deadline = Date.now() + 120_000;
      while (logLinesOf(journal) < 12) {
        if (writer.exitCode !== null)
          throw new Error(`the writer stopped early (${writer.exitCode}): ${writerErrors}`);
        if (Date.now() > deadline) throw new Error("the writer did not get 12 files written in 120 s");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      // In the middle of writing: the writer is busy with the next file.
      expect(await first.stop("SIGKILL")).toBe("SIGKILL");
    } finally {
      writer.kill("SIGKILL");
    }
    const acknowledged = fs
      .readFileSync(journal, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((line) => line.split(" ") as [string, string]);
    // The dead device's file system and loop device go; the stale FUSE mount is cleared by the next start.
    await detachBelow(dir);

    const second = await TapiskProcess.start(args());
    // Mounting replays ext4's journal; then every acknowledged file must be there, byte for byte.
    const again = mountExt4(second.device.path);
    for (const [index, digest] of acknowledged) {
      expect(sha(fs.readFileSync(path.join(again, `file-${index}`))), `file-${index}`).toBe(digest);
    }
    execFileSync("umount", [again]);
    execFileSync("e2fsck", ["-fn", second.device.path], { stdio: "pipe" });
    expect(await second.stop("SIGINT")).toBe(0);
  });

  it("after a restart reads from the tape only the blocks the cache does not hold", async () => {
    // Run 1 writes two regions, X (blocks 0–255) and Y (blocks 4096–4351), and pushes them.
    const x = { offset: 0, length: 256 * BLOCK };
    const y = { offset: 4096 * BLOCK, length: 256 * BLOCK };
    const first = await TapiskProcess.start(args({ extra: ["--pull-workers", "0"] }));
    writeDevice(first.device.path, x.offset, patternBytes(x.length, 1));
    writeDevice(first.device.path, y.offset, patternBytes(y.length, 2));
    expect(await first.stop("SIGINT")).toBe(0);

    // Run 2, with a new cache: reads X only (from tape), and is killed.
    const second = await TapiskProcess.start(
      args({ cache: "cache-b.img", log: "run2.log", extra: ["--pull-workers", "0"] }),
    );
    expect(sha(readDevice(second.device.path, x.offset, x.length))).toBe(sha(patternBytes(x.length, 1)));
    expect(await second.stop("SIGKILL")).toBe("SIGKILL");
    await detachBelow(dir);
    expect(logLines(path.join(dir, "run2.log")).filter((line) => line.startsWith("read "))).toHaveLength(256);

    // Run 3, over that cache: reads X and Y; the tape gives Y only, each of its blocks once.
    const third = await TapiskProcess.start(
      args({ cache: "cache-b.img", log: "run3.log", extra: ["--pull-workers", "0"] }),
    );
    expect(sha(readDevice(third.device.path, x.offset, x.length))).toBe(sha(patternBytes(x.length, 1)));
    expect(sha(readDevice(third.device.path, y.offset, y.length))).toBe(sha(patternBytes(y.length, 2)));
    expect(await third.stop("SIGINT")).toBe(0);
    const index = TapeIndex.open(
      path.join(dir, "tapisk.db"),
      { blockSize: BLOCK, size: SIZE },
      { readOnly: true },
    );
    const yPositions = Array.from({ length: 256 }, (_, i) => index.get(4096 + i)!).sort((a, b) => a - b);
    await index.close();
    const read = logLines(path.join(dir, "run3.log"))
      .filter((line) => line.startsWith("read "))
      .map((line) => Number(line.split(" ")[1]))
      .sort((a, b) => a - b);
    expect(read).toEqual(yPositions);
  });

  it("--read-only refuses writes: EROFS at the file, a write-protected block device (the kernel's EPERM)", async () => {
    const first = await TapiskProcess.start(args());
    writeDevice(first.device.path, 0, patternBytes(BLOCK, 3));
    expect(await first.stop("SIGINT")).toBe(0);

    const file = await TapiskProcess.start(args({ extra: ["--read-only", "--as", "file"] }));
    expect(file.device).toMatchObject({ readOnly: true });
    expect(sha(readDevice(file.device.path, 0, BLOCK))).toBe(sha(patternBytes(BLOCK, 3)));
    expect(() => fs.openSync(file.device.path, "r+")).toThrow(expect.objectContaining({ code: "EROFS" }));
    expect(await file.stop("SIGINT")).toBe(0);

    const block = await TapiskProcess.start(args({ extra: ["--read-only"] }));
    expect(sha(readDevice(block.device.path, 0, BLOCK))).toBe(sha(patternBytes(BLOCK, 3)));
    expect(execFileSync("blockdev", ["--getro", block.device.path], { encoding: "utf8" }).trim()).toBe("1");
    // Linux opens a write-protected block device for writing and refuses the write itself with EPERM.
    const fd = fs.openSync(block.device.path, "r+");
    try {
      expect(() => fs.writeSync(fd, Buffer.alloc(BLOCK), 0, BLOCK, 0)).toThrow(
        expect.objectContaining({ code: "EPERM" }),
      );
    } finally {
      fs.closeSync(fd);
    }
    expect(() =>
      execFileSync("mount", ["-o", "rw", "-t", "ext4", block.device.path, path.join(dir, "fs")], {
        stdio: "pipe",
      }),
    ).toThrow();
    expect(await block.stop("SIGINT")).toBe(0);
    // Nothing was written: the tape holds what the first run wrote, the index the same.
    expect(fs.statSync(path.join(dir, "tape.img")).size).toBe(BLOCK);
  });

  it("a second SIGINT exits at once while the first is pushing; the next start pushes what was left", async () => {
    // Each record costs 200 ms: pushing 64 blocks takes about 13 s, time for a second signal.
    const slow = await TapiskProcess.start(
      args({ extra: ["--push-interval", "1h", "--pull-workers", "0"] }).map((arg) =>
        arg.startsWith("sim:") ? `${arg}&record-ms=200` : arg,
      ),
    );
    const data = patternBytes(64 * BLOCK, 11);
    execFileSync("dd", [`of=${slow.device.path}`, `bs=${BLOCK}`, "oflag=direct", "status=none"], {
      input: data,
    });
    slow.child.kill("SIGINT");
    const deadline = Date.now() + 30_000;
    while (!slow.stderr.includes("closing")) {
      if (Date.now() > deadline) throw new Error(`no sign of closing:\n${slow.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await slow.stop("SIGINT")).toBe(130);
    await detachBelow(dir);

    const again = await TapiskProcess.start(args({ log: "after.log" }));
    expect(sha(readDevice(again.device.path, 0, data.length))).toBe(sha(data));
    expect(await again.stop("SIGINT")).toBe(0);
    // The cache held the blocks; this run pushed the ones the first did not get to.
    const written = logLines(path.join(dir, "after.log")).filter((line) => line.startsWith("write "));
    expect(written.length).toBeGreaterThan(0);
    expect(logLines(path.join(dir, "after.log")).filter((line) => line.startsWith("read "))).toEqual([]);
  });

  it("refuses a non-empty tape whose index is missing, with a message that says what to do", async () => {
    const first = await TapiskProcess.start(args());
    writeDevice(first.device.path, 0, patternBytes(BLOCK, 3));
    expect(await first.stop("SIGINT")).toBe(0);
    fs.renameSync(path.join(dir, "tapisk.db"), path.join(dir, "moved.db"));
    const { code, stderr } = await runTapisk(args());
    expect(code).toBe(2); // a usage error: the wrong (or no) index named
    expect(stderr).toMatch(/holds \d+ records, but the index .*tapisk\.db does not exist/);
    expect(stderr).toContain("--index");
  });

  it("--help shows examples for a real and a simulated drive", async () => {
    const { code, stdout } = await runTapisk(["--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain("Examples:");
    expect(stdout).toContain("mt -f /dev/nst0 setblk 4096");
    expect(stdout).toContain("stsetoptions /dev/nst0 scsi2logical");
    expect(stdout).toContain("$ tapisk --drive 'sim:");
  });
});

function logLinesOf(file: string): number {
  return fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter(Boolean).length : 0;
}

/** What a killed tapisk leaves: its file system on the dead device (lazily unmounted) and loop device (detached). */
async function detachBelow(dir: string): Promise<void> {
  for (const target of mountsUnder(dir, "other")) execFileSync("umount", ["-l", target]);
  for (const loop of loopsUnder(dir)) execFileSync("losetup", ["-d", loop]);
}

/**
 * Direct I/O (dd, O_DIRECT): no page cache of the block device is left in
 * this process's wake — pages under read-ahead when tapisk is killed would
 * make the loop device's last release wait for them.
 */
function writeDevice(device: string, offset: number, data: Uint8Array): void {
  const input = path.join(os.tmpdir(), `tapisk-write-${process.pid}`);
  fs.writeFileSync(input, data);
  try {
    execFileSync("dd", [
      `if=${input}`,
      `of=${device}`,
      `bs=${BLOCK}`,
      `seek=${offset / BLOCK}`,
      "oflag=direct",
      "conv=notrunc,fsync",
      "status=none",
    ]);
  } finally {
    fs.rmSync(input, { force: true });
  }
}

function readDevice(device: string, offset: number, length: number): Buffer {
  return execFileSync(
    "dd",
    [
      `if=${device}`,
      `bs=${BLOCK}`,
      `skip=${offset / BLOCK}`,
      `count=${length / BLOCK}`,
      "iflag=direct",
      "status=none",
    ],
    {
      maxBuffer: length + 1,
    },
  );
}
