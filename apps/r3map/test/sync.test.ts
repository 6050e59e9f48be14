/**
 * r3map sync push|pull against real servers (`r3map serve`) on 127.0.0.1:
 * copies that differ in 1 % of random 4 KiB pages and in their last, partial
 * chunk converge byte for byte, through Connect (the server hashes its own
 * copy) and NBD (read here to compare); a block device (a loop device over a
 * file) syncs the same way; a lossy remote is caught by --check; a push
 * killed in the middle converges when run again; sizes that differ fail
 * unless --resize; --watch replicates a file that keeps changing.
 */
import { execFileSync } from "node:child_process";
import { closeSync, fsyncSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { StallingProxy } from "./stalling-proxy.js";
import { firstLine, r3map, scratch, stopAll } from "./support.js";

const work = scratch("r3map-cli-sync-");
const PAGE = 4096;
const SIZE = 256 * 1024 * 1024 + 1536; // not a whole number of pages: the last chunk is partial
const lossyScheme = join(import.meta.dirname, "fixtures", "lossy-scheme.mjs");
const isRoot = process.getuid?.() === 0;
const loops: string[] = [];

afterEach(async () => {
  await stopAll();
  for (const device of loops.splice(0)) execFileSync("losetup", ["-d", device]);
});
afterAll(() => work.remove());

/** Deterministic 32-bit numbers (xorshift32 from `seed`). */
function xorshift(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
}

/** Deterministic bytes. */
function seededBytes(size: number, seed: number): Buffer {
  const bytes = Buffer.alloc(size);
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, Math.floor(size / 4));
  const next = xorshift(seed);
  for (let i = 0; i < words.length; i++) words[i] = next();
  return bytes;
}

/**
 * Changes `fraction` of the whole pages of `bytes` at random (seeded) and the
 * last, partial page; returns the page indexes changed.
 */
function changePages(bytes: Buffer, fraction: number, seed: number): number[] {
  const pages = Math.floor(bytes.length / PAGE);
  const next = xorshift(seed);
  const changed = new Set<number>();
  while (changed.size < Math.ceil(pages * fraction)) changed.add(next() % pages);
  for (const page of changed) bytes[page * PAGE + (seed % PAGE)]! ^= 0xa5;
  bytes[bytes.length - 1]! ^= 0x5a;
  return [...changed, pages];
}

/** Two copies: `remote.img` and `local.img`, the latter with 1 % of its pages and its tail changed. */
function twoCopies(
  name: string,
  fraction = 0.01,
  seed = 1,
): { remote: string; local: string; changed: number } {
  const remote = join(work.dir, `${name}-remote.img`);
  const local = join(work.dir, `${name}-local.img`);
  const bytes = seededBytes(SIZE, seed);
  writeFileSync(remote, bytes);
  const changed = changePages(bytes, fraction, seed + 1).length;
  writeFileSync(local, bytes);
  return { remote, local, changed };
}

function sameBytes(a: string, b: string): boolean {
  return readFileSync(a).equals(readFileSync(b));
}

/** Pages in which two files differ. */
function differingPages(a: string, b: string): number {
  const x = readFileSync(a);
  const y = readFileSync(b);
  let count = 0;
  for (let at = 0; at < x.length; at += PAGE) {
    if (!x.subarray(at, at + PAGE).equals(y.subarray(at, at + PAGE))) count++;
  }
  return count;
}

async function serve(uri: string, transport: "connect" | "nbd", extra: string[] = []): Promise<string> {
  const server = r3map(["serve", uri, `--${transport}`, "127.0.0.1:0", "--print-uri", ...extra]);
  return firstLine(server);
}

async function sync(
  args: string[],
): Promise<{ status: number | null; events: Array<Record<string, unknown>>; stderr: string }> {
  const running = r3map(["sync", ...args, "--json"]);
  const result = await running.exited;
  return { status: result.status, events: running.events(), stderr: result.stderr };
}

const done = (events: Array<Record<string, unknown>>) => events.find((e) => e.event === "done")!;

describe("r3map sync", () => {
  it("push and pull converge over Connect, moving only what differs (the server hashes its own copy)", async () => {
    const { remote, local, changed } = twoCopies("connect");
    const uri = await serve(`file://${remote}`, "connect");
    const pushed = await sync(["push", local, uri, "--check"]);
    expect(pushed.status, pushed.stderr).toBe(0);
    expect(sameBytes(local, remote)).toBe(true);
    const report = done(pushed.events);
    expect(report).toMatchObject({ bothHash: true, bytesReadToCompare: 0, chunksMoved: changed });
    expect(report.bytesMoved).toBeLessThanOrEqual(0.015 * SIZE);
    // Digests are a small fraction of the data (about 1.5 MiB for 256 MiB here).
    expect(report.digestBytes).toBeLessThan(SIZE / 100);
    expect(pushed.events.some((e) => e.event === "warning")).toBe(false);

    // The local copy goes stale again; a pull brings it back.
    const bytes = readFileSync(local);
    changePages(bytes, 0.01, 7);
    writeFileSync(local, bytes);
    expect(sameBytes(local, remote)).toBe(false);
    const pulled = await sync(["pull", uri, local, "--check"]);
    expect(pulled.status, pulled.stderr).toBe(0);
    expect(sameBytes(local, remote)).toBe(true);
    expect(done(pulled.events).bytesMoved).toBeLessThanOrEqual(0.015 * SIZE);
  });

  it("a remote that cannot hash (NBD) converges too, read here to compare, and the command says so", async () => {
    const { remote, local } = twoCopies("nbd", 0.01, 3);
    const uri = await serve(`file://${remote}`, "nbd");
    const pushed = await sync(["push", local, uri]);
    expect(pushed.status, pushed.stderr).toBe(0);
    expect(sameBytes(local, remote)).toBe(true);
    expect(pushed.events).toContainEqual(
      expect.objectContaining({ event: "warning", fallback: "read-and-compare" }),
    );
    expect(done(pushed.events)).toMatchObject({ bothHash: false, bytesReadToCompare: SIZE });
    expect(done(pushed.events).bytesMoved).toBeLessThanOrEqual(0.015 * SIZE);

    const bytes = readFileSync(local);
    changePages(bytes, 0.01, 9);
    writeFileSync(local, bytes);
    const pulled = await sync(["pull", uri, local]);
    expect(pulled.status, pulled.stderr).toBe(0);
    expect(sameBytes(local, remote)).toBe(true);
  });

  it.skipIf(!isRoot)("a block device (a loop device over a file) pushes and pulls the same way", async () => {
    const { remote, local } = twoCopies("loop", 0.01, 5);
    const device = execFileSync("losetup", ["-f", "--show", local], { encoding: "utf8" }).trim();
    loops.push(device);
    const uri = await serve(`file://${remote}`, "connect");
    const pushed = await sync(["push", device, uri]);
    expect(pushed.status, pushed.stderr).toBe(0);
    expect(sameBytes(device, remote)).toBe(true);
    expect(done(pushed.events).bytesMoved).toBeLessThanOrEqual(0.015 * SIZE);

    // Change the device through itself (its page cache is not the file's), then pull the remote back over it.
    const fd = openSync(device, "r+");
    const junk = Buffer.alloc(PAGE, 0xee);
    for (const page of [0, 4097, 65_000]) writeSync(fd, junk, 0, PAGE, page * PAGE);
    writeSync(fd, junk, 0, 100, SIZE - 100);
    fsyncSync(fd);
    closeSync(fd);
    expect(sameBytes(device, remote)).toBe(false);
    const pulled = await sync(["pull", uri, device]);
    expect(pulled.status, pulled.stderr).toBe(0);
    expect(done(pulled.events)).toMatchObject({ chunksMoved: 4 });
    expect(sameBytes(device, remote)).toBe(true);
  });

  it("--check reports a remote that did not store what it was sent (ERR_INTEGRITY, exit 4)", async () => {
    const { remote, local } = twoCopies("lossy", 0.001, 11);
    // The remote drops writes to the last page, which differs between the copies.
    const uri = await serve(`lossy+file://${remote}?drop=${SIZE - 1}`, "connect", ["--scheme", lossyScheme]);
    const pushed = await sync(["push", local, uri, "--check"]);
    expect(pushed.status).toBe(4);
    expect(pushed.events).toContainEqual(
      expect.objectContaining({
        event: "error",
        code: "ERR_INTEGRITY",
        message: expect.stringMatching(/1 chunk/),
      }),
    );
    expect(pushed.stderr).toMatch(/BLAKE3 check found 1 chunk/);
    // Without --check the loss goes unseen by this run — which is what --check is for.
    expect(sameBytes(local, remote)).toBe(false);
  });

  it("a push killed (SIGKILL) in the middle converges when run again", async () => {
    const { remote, local, changed } = twoCopies("killed", 0.1, 13);
    const uri = await serve(`file://${remote}`, "connect");
    const port = Number(new URL(uri).port);
    // 8 MiB of the ~26 MiB to move get through, then the proxy holds the push. One request at a
    // time: the chunks go in calls of 4 MiB, and a call lands only once it has arrived whole.
    const proxy = await StallingProxy.start(port, 8 * 1024 * 1024);
    try {
      const push = r3map([
        "sync",
        "push",
        local,
        `r3map+h2c://127.0.0.1:${proxy.port}`,
        "--json",
        "--concurrency",
        "1",
      ]);
      await push.until(() => proxy.stalled, "the push to be stalled mid-way", 60_000);
      push.child.kill("SIGKILL");
      expect((await push.exited).signal).toBe("SIGKILL");
    } finally {
      await proxy.close();
    }
    // Part of it landed: fewer pages differ than before, but some still do.
    const left = differingPages(local, remote);
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThan(changed);
    const again = await sync(["push", local, uri, "--check"]);
    expect(again.status, again.stderr).toBe(0);
    expect(sameBytes(local, remote)).toBe(true);
    expect(done(again.events).chunksMoved).toBe(left);
  });

  it("sizes that differ are a clear error unless --resize (a pull resizes the local file)", async () => {
    const remote = join(work.dir, "sized-remote.img");
    const local = join(work.dir, "sized-local.img");
    writeFileSync(remote, seededBytes(4 * 1024 * 1024 + 100, 21));
    writeFileSync(local, seededBytes(4 * 1024 * 1024 + 8192, 22));
    const uri = await serve(`file://${remote}`, "connect");
    const pushed = await sync(["push", local, uri]);
    expect(pushed.status).toBe(2);
    expect(pushed.stderr).toMatch(/sizes differ.*--resize/);
    const refused = await sync(["push", local, uri, "--resize"]);
    expect(refused.status).toBe(5);
    expect(refused.stderr).toMatch(/cannot be resized/);
    const pulled = await sync(["pull", uri, local, "--resize", "--check"]);
    expect(pulled.status, pulled.stderr).toBe(0);
    expect(sameBytes(local, remote)).toBe(true);
    // A new file is created at the remote's size.
    const fresh = join(work.dir, "sized-new.img");
    const created = await sync(["pull", uri, fresh, "--resize"]);
    expect(created.status, created.stderr).toBe(0);
    expect(sameBytes(fresh, remote)).toBe(true);
  });

  it("--watch pushes what changed each interval, and once more at SIGINT", async () => {
    const remote = join(work.dir, "watch-remote.img");
    const local = join(work.dir, "watch-local.img");
    writeFileSync(remote, seededBytes(16 * 1024 * 1024, 31));
    writeFileSync(local, seededBytes(16 * 1024 * 1024, 32));
    const uri = await serve(`file://${remote}`, "connect");
    const watch = r3map(["sync", "push", local, uri, "--watch", "200ms", "--json"]);
    await watch.until((w) => w.events().some((e) => e.label === "synced"), "the first sync");
    expect(sameBytes(local, remote)).toBe(true);
    const rounds = () => watch.events().filter((e) => e.label === "round").length;
    for (const page of [3, 1000, 4095]) {
      const fd = openSync(local, "r+");
      writeSync(fd, Buffer.alloc(PAGE, page & 0xff), 0, PAGE, page * PAGE);
      closeSync(fd);
      // A round that began after the write has pushed it.
      const seen = rounds();
      await watch.until(() => rounds() >= seen + 2, "two more rounds");
      expect(sameBytes(local, remote)).toBe(true);
    }
    const pushedRounds = watch.events().filter((e) => e.label === "round" && (e.chunks as number) > 0);
    expect(pushedRounds.length).toBe(3);
    const stopped = await watch.stop("SIGINT");
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(watch.events().at(-1)).toMatchObject({ event: "done", exitStatus: 0 });
  });
});
