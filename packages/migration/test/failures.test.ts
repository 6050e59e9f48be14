/**
 * Migration failures, each with a real process killed or a real connection
 * cut: a clear error where the migration cannot go on, no data lost, and a
 * seeder that goes back to serving its application and waits for a new
 * leecher.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { testRandom, waitFor } from "@r3map/core/testing";
import { describe, expect, it } from "vitest";
import { Leecher } from "../src/index.js";
import { testFileScope } from "./helpers.js";
import { FixtureProcess, unmountLeftover } from "./processes.js";
import { CuttableProxy } from "./proxy.js";

const size = 32 * 1024 * 1024;
const chunkSize = 64 * 1024;
const { scratch, cleanup } = testFileScope();

/** A seeder process over a fresh random image; its file mount is unmounted even if it is killed. */
async function startSeeder(name: string, recoveryMs = 2000) {
  const image = path.join(scratch, `${name}.img`);
  fs.writeFileSync(image, testRandom().bytes(size)); // the seed is printed on failure
  const seeder = new FixtureProcess("seeder-process.mjs", [image, String(chunkSize), String(recoveryMs)]);
  const ready = await seeder.line((line) => typeof line.url === "string");
  cleanup.add(seeder, async (s) => {
    s.child.kill("SIGTERM");
    await Promise.race([s.exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    await s.kill();
    await unmountLeftover(ready.path as string);
  });
  return { seeder, image, url: ready.url as string, data: ready.data as string, path: ready.path as string };
}

/** Whether `promise` settles within `ms` (it keeps running either way). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    }),
  ]);
  clearTimeout(timer);
  return settled;
}

/** A leecher in a process of its own (file mount), open and pre-copying; killed and unmounted by the cleanup. */
async function startLeecherProcess(url: string): Promise<FixtureProcess> {
  const leecher = new FixtureProcess("leecher-process.mjs", [url, "file"]);
  const opened = await leecher.line((line) => "path" in line);
  return cleanup.add(leecher, async (l) => {
    await l.kill();
    await unmountLeftover(opened.path as string);
  });
}

/** A leecher here, pulling slowly enough that a failure lands in the middle of its pre-copy. */
async function openLeecher(url: string, options: { data?: string; recoveryMs?: number } = {}) {
  const leecher = await Leecher.open(url, { as: "file", pullWorkers: 1, ...options });
  return cleanup.add(leecher, (l) => l.close());
}

/** Starts a second, undisturbed leecher and checks that it completes with the seeder's final bytes. */
async function migrateFully(seeder: FixtureProcess, url: string): Promise<void> {
  const leecher = await openLeecher(url);
  await waitFor(() => (leecher.progress()?.chunksLocal ?? 0) > 0, {
    timeoutMs: 60_000,
    message: "the pull to begin",
  });
  await leecher.finalize();
  const stopped = await seeder.line((line) => line.event === "app");
  expect(stopped.writes).toBeGreaterThan(0);
  const synced = await seeder.line((line) => line.event === "synced");
  await leecher.release();
  const { createHash } = await import("node:crypto");
  const bytes = await fs.promises.readFile(leecher.path!);
  expect(createHash("sha256").update(bytes).digest("hex")).toBe(synced.sha256);
  await leecher.close();
}

describe("migration failures", () => {
  it("the seeder is killed during pre-copy: finalize rejects with a typed error, the leecher closes cleanly", async () => {
    const { seeder, url } = await startSeeder("killed");
    const leecher = await openLeecher(url);
    await waitFor(() => (leecher.progress()?.chunksLocal ?? 0) > 0, {
      timeoutMs: 60_000,
      message: "the pull to begin",
    });
    await seeder.kill();
    await expect(leecher.finalize()).rejects.toMatchObject({ code: "ERR_REMOTE_UNREACHABLE" });
    const mountPoint = path.dirname(leecher.path!);
    await leecher.close();
    expect(fs.readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(` ${mountPoint} `);
  });

  it("the network fails during pre-copy: finalize rejects; the seeder stops tracking, its application never noticed, a new leecher completes", async () => {
    const { seeder, url, data } = await startSeeder("cut");
    const controlPort = Number(new URL(url).port);
    const dataUrl = new URL(data);
    const control = cleanup.add(await CuttableProxy.start(controlPort), (p) => p.close());
    const dataPlane = cleanup.add(await CuttableProxy.start(Number(dataUrl.port)), (p) => p.close());
    const leecher = await openLeecher(`r3map+h2c://127.0.0.1:${control.port}`, {
      data: `nbd://127.0.0.1:${dataPlane.port}/seed`,
    });
    await seeder.line((line) => line.phase === "tracking");
    await waitFor(() => (leecher.progress()?.chunksLocal ?? 0) > 0, {
      timeoutMs: 60_000,
      message: "the pull to begin",
    });
    control.cut();
    dataPlane.cut();
    await seeder.line((line) => line.event === "leecher-gone");
    await seeder.line((line) => line.phase === "idle");
    await expect(leecher.finalize()).rejects.toMatchObject({ code: "ERR_REMOTE_UNREACHABLE" });
    await leecher.close();
    // The application never stopped: it stops for the first time in the next migration's last round.
    await migrateFully(seeder, url);
    const stops = seeder.lines((line) => line.event === "app");
    expect(stops).toHaveLength(0);
  });

  it("the leecher is killed during pre-copy: the seeder stops tracking and a new leecher completes", async () => {
    const { seeder, url } = await startSeeder("leecher-killed");
    const leecher = await startLeecherProcess(url);
    await seeder.line((line) => line.phase === "tracking");
    await leecher.kill();
    await seeder.line((line) => line.event === "leecher-gone");
    await seeder.line((line) => line.phase === "idle");
    await migrateFully(seeder, url);
  });

  it("the leecher is killed after the last round: the seeder lets its application write again, and a new leecher completes", async () => {
    const { seeder, url } = await startSeeder("killed-after-sync");
    const leecher = await startLeecherProcess(url);
    leecher.send("finalize");
    await leecher.line((line) => line.finalized === true);
    await seeder.line((line) => line.phase === "synced");
    await seeder.line((line) => line.event === "synced");
    await leecher.kill();
    await seeder.line((line) => line.event === "leecher-gone");
    await seeder.line((line) => line.phase === "idle");
    await migrateFully(seeder, url);
  });

  describe("the network fails during post-copy", () => {
    /** A seeder behind two cuttable proxies, and a leecher through them, finalized: post-copy with most chunks still remote. */
    async function postCopyThroughProxies(leecherRecoveryMs: number) {
      const { seeder, url, data } = await startSeeder("post-copy", 60_000);
      const control = cleanup.add(await CuttableProxy.start(Number(new URL(url).port)), (p) => p.close());
      // Each data connection stalls after 2 MiB: the pull (sequential from the start) gets no further than
      // that before the cut, so the chunks near the end stay remote into post-copy, however fast the machine.
      const dataPlane = cleanup.add(
        await CuttableProxy.start(Number(new URL(data).port), { capBytes: 2 * 1024 * 1024 }),
        (p) => p.close(),
      );
      const leecher = await openLeecher(`r3map+h2c://127.0.0.1:${control.port}`, {
        data: `nbd://127.0.0.1:${dataPlane.port}/seed`,
        recoveryMs: leecherRecoveryMs,
      });
      leecher.on("error", () => {}); // reported to the test through the reads below
      await leecher.finalize();
      const synced = await seeder.line((line) => line.event === "synced");
      return { seeder, leecher, control, dataPlane, sha256: synced.sha256 as string };
    }

    /** In a chunk not local yet: past what the capped pull and the primed last chunk brought. */
    const remoteOffset = size - 3 * chunkSize;

    it("reads of chunks not yet here wait while the network is down and complete once it is back; the migration resumes", async () => {
      const { seeder, leecher, control, dataPlane, sha256 } = await postCopyThroughProxies(30_000);
      control.cut();
      dataPlane.cut();
      const reading = fs.promises.readFile(leecher.path!).then((bytes) => bytes);
      // Waiting, not failed: a read of a remote chunk is held while the network is down.
      const handle = await fs.promises.open(leecher.path!, "r");
      const one = handle.read(Buffer.alloc(4096), 0, 4096, remoteOffset);
      expect(await settlesWithin(one, 1500)).toBe(false);
      expect(seeder.lines((line) => line.event === "leecher-gone")).toEqual([]);
      control.restore();
      dataPlane.restore();
      expect((await one).bytesRead).toBe(4096);
      await handle.close();
      const { createHash } = await import("node:crypto");
      expect(
        createHash("sha256")
          .update(await reading)
          .digest("hex"),
      ).toBe(sha256);
      await leecher.release();
      await seeder.line((line) => line.phase === "migrated");
    });

    it("past the leecher's bound, reads of chunks not yet here fail with EIO", async () => {
      const { leecher, control, dataPlane } = await postCopyThroughProxies(1500);
      control.cut();
      dataPlane.cut();
      const handle = await fs.promises.open(leecher.path!, "r");
      try {
        const started = performance.now();
        await expect(handle.read(Buffer.alloc(4096), 0, 4096, remoteOffset)).rejects.toMatchObject({
          code: "EIO",
        });
        // The bound, plus the device's own answering and one last attempt.
        expect(performance.now() - started).toBeLessThan(15_000);
      } finally {
        await handle.close();
      }
    });
  });

  it("a second leecher is refused while one is attached", async () => {
    const { url } = await startSeeder("busy");
    await openLeecher(url);
    await expect(Leecher.open(url, { as: "file" })).rejects.toMatchObject({ code: "ERR_BUSY" });
  });
});
