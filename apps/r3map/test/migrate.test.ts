/**
 * `r3map migrate`, as three real processes: A seeds a disk image that an
 * application (a child process) keeps writing; B leeches it, is finalized
 * with SIGUSR1 and seeds it on (--then-seed); C leeches from B as a block
 * device while the test writes into B. Each hand-over ends with the bytes of
 * the seeder's last round, and every process exits 0 leaving nothing mounted.
 */
import { execFile, spawn } from "node:child_process";
import { createCipheriv, createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import type { Running } from "@r3map/cli-kit/testing";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { r3map, scratch, stopAll } from "./support.js";

const run = promisify(execFile);
const size = 32 * 1024 * 1024;
const work = scratch("r3map-migrate-test-");
const writerScript = path.join(
  import.meta.dirname,
  "../../../packages/migration/test/fixtures/writer-process.mjs",
);
const writers = new Set<ReturnType<typeof spawn>>();

afterEach(async () => {
  for (const writer of writers) writer.kill("SIGKILL");
  writers.clear();
  await stopAll();
});
afterAll(() => work.remove());

type Event = Record<string, unknown>;

/** The first event that `match` accepts, once it is there. */
async function event(process_: Running, match: (e: Event) => boolean, what: string): Promise<Event> {
  await process_.until((r) => r.events().some(match), what, 120_000);
  return process_.events().find(match)!;
}

const phase = (name: string) => (e: Event) => e.event === "phase" && e.phase === name;

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Writes through the kernel, off this thread (the file is a mount another process serves). */
async function writeInto(file: string, data: Buffer, offset: number): Promise<void> {
  const handle = await fs.promises.open(file, "r+");
  try {
    await handle.write(data, 0, data.length, offset);
  } finally {
    await handle.close();
  }
}

function mounted(dir: string): boolean {
  return fs.readFileSync("/proc/self/mountinfo", "utf8").includes(` ${dir} `);
}

describe("r3map migrate", () => {
  it("A seeds while its application writes → B leeches, SIGUSR1 finalizes, B seeds on → C leeches: the bytes of each last round arrive", async () => {
    const image = path.join(work.dir, "a.img");
    // Bytes that differ everywhere from zeros (what a chunk never fetched would read as), the same each run.
    fs.writeFileSync(
      image,
      createCipheriv("aes-128-ctr", Buffer.alloc(16, 7), Buffer.alloc(16)).update(Buffer.alloc(size)),
    );
    const tokenFile = path.join(work.dir, "token");
    fs.writeFileSync(tokenFile, "migrate-secret\n");
    const writerPid = path.join(work.dir, "writer.pid");
    const snapshot = path.join(work.dir, "last-round.img");
    const tokens = ["--token-file", tokenFile];

    // A: the application is suspended at the last round (SIGTERM, then wait for it to exit), and what
    // the resource holds then is copied aside.
    const a = r3map([
      "migrate",
      "seed",
      `file://${image}`,
      "--listen",
      "127.0.0.1:0",
      "--chunk-size",
      "64KiB",
      "--before-sync",
      `kill -TERM "$(cat ${writerPid})" && tail --pid="$(cat ${writerPid})" -f /dev/null && cp "$R3MAP_PATH" ${snapshot}`,
      ...tokens,
      "--json",
    ]);
    const aStart = await event(a, (e) => e.event === "start", "A's start");
    const writer = spawn(process.execPath, [writerScript, String(aStart.path)], {
      stdio: ["ignore", "ignore", "inherit"],
    });
    writers.add(writer);
    const writerExited = new Promise((resolve) => writer.once("exit", resolve));
    fs.writeFileSync(writerPid, String(writer.pid));

    // B: finalized with SIGUSR1 once its pre-copy has caught up, then seeds on.
    const b = r3map([
      "migrate",
      "leech",
      String(aStart.url),
      "--as",
      "file",
      "--then-seed",
      "127.0.0.1:0",
      ...tokens,
      "--json",
    ]);
    const bStart = await event(b, (e) => e.event === "start", "B's start");
    expect(bStart).toMatchObject({ size, as: "file", chunkSize: 64 * 1024 });
    await event(a, phase("tracking"), "A tracking");
    // One write known to land during pre-copy, whatever the application's pace.
    await writeInto(String(aStart.path), Buffer.alloc(300_000, 0xa5), 7 * 1024 * 1024 + 11);
    await event(b, (e) => e.event === "progress" && e.done === size, "B's pre-copy to catch up");
    b.child.kill("SIGUSR1");
    const downtime = await event(b, (e) => e.event === "downtime", "B's downtime");
    expect(downtime.dirtyChunks, "chunks the application changed during pre-copy").toBeGreaterThan(0);
    expect(downtime.downtimeMs).toBeGreaterThan(0);
    const bSeeding = await event(b, phase("seeding"), "B seeding on");
    const aEnd = await a.exited;
    expect(aEnd.status, aEnd.stderr).toBe(0);
    expect(a.events().at(-1)).toMatchObject({ event: "done", exitStatus: 0, migrated: true });
    // The application was stopped by --before-sync (it exits 0 on SIGTERM).
    expect(await writerExited).toBe(0);
    const lastRoundA = fs.readFileSync(snapshot);
    const bFile = String(bStart.path);
    expect(sha256(await fs.promises.readFile(bFile)), "B holds A's last round").toBe(sha256(lastRoundA));

    // C: a block device; B's application (this test) writes while C pulls.
    const c = r3map(["migrate", "leech", String(bSeeding.url), "--as", "path", ...tokens, "--json"]);
    const cStart = await event(c, (e) => e.event === "start", "C's start");
    await event(b, phase("tracking"), "B tracking");
    const change = Buffer.alloc(1024 * 1024, 0x5a);
    await writeInto(bFile, change, 5 * 1024 * 1024 + 100);
    const expected = Buffer.from(lastRoundA);
    change.copy(expected, 5 * 1024 * 1024 + 100);
    c.child.kill("SIGUSR1");
    const cDowntime = await event(c, (e) => e.event === "downtime", "C's downtime");
    expect(cDowntime.dirtyChunks).toBeGreaterThanOrEqual(1);
    await event(c, phase("released"), "C released");
    const bEnd = await b.exited;
    expect(bEnd.status, bEnd.stderr).toBe(0);
    expect(mounted(path.dirname(bFile)), "B unmounted").toBe(false);
    const device = String(cStart.path);
    expect(device).toMatch(/^\/dev\/loop\d+$/);
    expect(sha256(await fs.promises.readFile(device)), "C holds B's last round").toBe(sha256(expected));

    const cEnd = await c.stop("SIGTERM");
    expect(cEnd.status, cEnd.stderr).toBe(0);
    const { stdout: loops } = await run("losetup", ["--list", "--noheadings", "--output", "NAME"]);
    expect(loops.split("\n").map((line) => line.trim())).not.toContain(device);
  }, 300_000);

  it("a leecher killed during the last round: the seeder gives the migration up (at once, or after --recovery), --after-resume runs, and it serves on", async () => {
    const image = path.join(work.dir, "recover.img");
    fs.writeFileSync(image, Buffer.alloc(8 * 1024 * 1024, 0x42));
    const resumed = path.join(work.dir, "resumed");
    const leecherPid = path.join(work.dir, "leecher.pid");
    // The leecher dies while the application is being suspended. Whether the seeder hears of it
    // before the round ends (the round is void) or after (it waits --recovery for the leecher to come
    // back), it ends idle and writable with the application resumed; the default 60 s would fail here.
    const seeder = r3map([
      "migrate",
      "seed",
      `file://${image}`,
      "--listen",
      "127.0.0.1:0",
      "--recovery",
      "1s",
      "--before-sync",
      `kill -KILL "$(cat ${leecherPid})"`,
      "--after-resume",
      `touch ${resumed}`,
      "--json",
    ]);
    const seeding = await event(seeder, (e) => e.event === "start", "the seeder's start");
    const leecher = r3map(["migrate", "leech", String(seeding.url), "--json"]);
    const leeching = await event(leecher, (e) => e.event === "start", "the leecher's start");
    fs.writeFileSync(leecherPid, String(leeching.pid));
    leecher.child.kill("SIGUSR1");
    await leecher.exited;
    // A killed process leaves its FUSE mount behind.
    await run("umount", ["-l", path.dirname(String(leeching.path))]).catch(() => {});
    await seeder.until(() => fs.existsSync(resumed), "--after-resume", 30_000);
    expect(
      seeder
        .events()
        .filter((e) => e.event === "phase")
        .at(-1),
    ).toMatchObject({ phase: "idle" });
    expect(seeder.events().some((e) => e.event === "warning")).toBe(true);
    // The resource is writable again through the seeder's mount.
    await writeInto(String(seeding.path), Buffer.from("after"), 0);
    const stopped = await seeder.stop("SIGTERM");
    expect(stopped.status, stopped.stderr).toBe(0);
  });

  it("refuses --as slice with a message that says what to use instead", async () => {
    const refused = await r3map(["migrate", "leech", "r3map+h2c://127.0.0.1:1", "--as", "slice"]).exited;
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/--as slice: .*no other process can use it.*--as file/);
  });

  it("refuses to seed beyond this machine without authentication of both planes", async () => {
    const open = await r3map(["migrate", "seed", "memory:?size=1MiB", "--listen", "0.0.0.0:0"]).exited;
    expect(open.status).toBe(2);
    expect(open.stderr).toMatch(/refusing to serve NBD on 0\.0\.0\.0:0 without authentication/);
    // A token protects the control plane only: the NBD data plane checks certificates, not tokens.
    const tokenOnly = await r3map(["migrate", "seed", "memory:?size=1MiB", "--listen", "0.0.0.0:0"], {
      env: { ...process.env, R3MAP_TOKEN: "t" },
    }).exited;
    expect(tokenOnly.status).toBe(2);
    expect(tokenOnly.stderr).toMatch(/refusing to serve NBD/);
  });
});
