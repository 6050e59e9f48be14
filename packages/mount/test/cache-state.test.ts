import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import * as fs from "node:fs";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { type MountDescription, mountFile } from "@r3map/mount";
import { isMountPoint, readAt } from "@r3map/mount/testing";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { leftovers, scratchDir } from "./helpers.js";

const scratch = scratchDir();
const countingFilter = pathToFileURL(path.join(import.meta.dirname, "fixtures/counting-filter.mjs")).href;
const chunkSize = 64 * 1024;
const chunks = 16;

const mountPoints: string[] = [];

afterEach(() => {
  // A run killed before the test remounted leaves a stale FUSE mount: never leave it behind.
  for (const dir of mountPoints.splice(0)) if (isMountPoint(dir)) execFileSync("umount", ["-l", dir]);
  expect(leftovers().filter((line) => line.includes(scratch))).toEqual([]);
});
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** The offsets of the reads and writes the counting filter logged, the last chunk (the mount's warm-up read) left out. */
function logged(log: string, kind: "read" | "write"): number[] {
  if (!fs.existsSync(log)) return [];
  return fs
    .readFileSync(log, "utf8")
    .split("\n")
    .filter((line) => line.startsWith(`${kind} `))
    .map((line) => Number(line.split(" ")[1]) / chunkSize)
    .filter((chunk) => chunk !== chunks - 1 || kind === "write")
    .sort((a, b) => a - b);
}

describe("managed.state: a cache that survives restarts", () => {
  it("after SIGKILL, reuses every cached chunk, reads only the others from the remote, and pushes the writes not pushed — native ones included", async () => {
    const dir = fs.mkdtempSync(path.join(scratch, "state-"));
    const image = path.join(dir, "remote.img");
    fs.writeFileSync(image, Buffer.alloc(chunks * chunkSize, 7));
    const mountPoint = path.join(dir, "mnt");
    fs.mkdirSync(mountPoint);
    mountPoints.push(mountPoint);
    const log = path.join(dir, "count.log");
    const description: MountDescription = {
      remote: `file://${image}`,
      chunkSize,
      schemes: [countingFilter],
      filters: [{ name: "count", options: { log } }],
      managed: {
        local: `file://${path.join(dir, "cache.img")}?create=1&size=${chunks * chunkSize}`,
        state: path.join(dir, "cache.state"),
        pull: false,
        push: { intervalMs: null },
      },
    };
    // The first run reads chunks 0–3, then writes: a whole chunk not yet local (5), part of a cached
    // chunk (1: stored by the FUSE thread itself, marked only in the written bitmap) and part of the
    // last chunk; then it is killed.
    const child = spawn(
      process.execPath,
      [
        path.join(import.meta.dirname, "fixtures/state-child.mjs"),
        JSON.stringify(description),
        mountPoint,
        JSON.stringify([
          [5 * chunkSize, chunkSize, 0x55],
          [chunkSize + 100, 200, 0x11],
          [(chunks - 1) * chunkSize + 10, 20, 0xff],
        ]),
        JSON.stringify([[0, 4 * chunkSize]]),
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const [, signal] = (await once(child, "exit")) as [number | null, string | null];
    expect(signal).toBe("SIGKILL");
    // What the first run fetched (the kernel may read a little ahead, a write may fetch its chunk first).
    const cached = new Set([...logged(log, "read"), 1, 5, chunks - 1]);
    expect(cached.size).toBeLessThan(chunks - 4);
    expect(logged(log, "write")).toEqual([]);
    fs.rmSync(log);

    // The killed run's FUSE mount is stale; mounting at the same place clears it.
    const mount = await mountFile(description, { mountPoint, readAheadKb: 4 });
    try {
      const all = readAt(mount.path, 0, chunks * chunkSize);
      const expected = Buffer.alloc(chunks * chunkSize, 7);
      expected.fill(0x55, 5 * chunkSize, 6 * chunkSize);
      expected.fill(0x11, chunkSize + 100, chunkSize + 300);
      expected.fill(0xff, (chunks - 1) * chunkSize + 10, (chunks - 1) * chunkSize + 30);
      expect(Buffer.compare(all, expected)).toBe(0);
      // What the cache held came from there: the remote was read for the other chunks only.
      const others = Array.from({ length: chunks }, (_, chunk) => chunk).filter(
        (chunk) => !cached.has(chunk),
      );
      expect(logged(log, "read")).toEqual(others);
      await mount.sync();
      expect(logged(log, "write")).toEqual([1, 5, chunks - 1]);
      expect(Buffer.compare(fs.readFileSync(image), expected)).toBe(0);
    } finally {
      await mount.close();
    }
  });

  it("refuses a state without a file cache", async () => {
    await expect(
      mountFile({
        remote: "memory:?size=1MiB",
        chunkSize,
        managed: { state: path.join(scratch, "x.state") },
      }),
    ).rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT", message: expect.stringContaining("file cache") });
  });
});
