/**
 * Continuous replication of a live memory region: a worker keeps writing a
 * userfaultfd region while `replicate` pushes the pages that write-protect
 * dirty tracking reports (no hashing) to a standby served by another process;
 * after the writer stops and one more round passes, the standby equals the
 * region byte for byte.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { ChunkBitmap, MemoryBackend } from "@r3map/core";
import { UffdRegion } from "@r3map/native";
import { ConnectBackend } from "@r3map/transport-connect";
import { describe, expect, it } from "vitest";
import { dirtyPageChanges, memorySide, type ReplicationRound, remoteSide, replicate } from "../src/index.js";

const capabilities = UffdRegion.capabilities();
const skip = !capabilities.available
  ? `userfaultfd unavailable: ${capabilities.reason}`
  : !capabilities.dirtyTracking
    ? "the kernel lacks write-protect dirty tracking (UFFD_FEATURE_WP_ASYNC, Linux 6.7+)"
    : undefined;

/** Polls `check` every 20 ms until it holds or `ms` pass. */
async function until(check: () => boolean, what: string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe.skipIf(skip !== undefined)("replicate a memory region", () => {
  it("a region a worker keeps writing converges on the standby once the writer stops", async () => {
    const size = 64 * 1024 * 1024;
    const chunkSize = 64 * 1024;
    const server = spawn(
      process.execPath,
      [join(import.meta.dirname, "fixtures", "serve-memory.mjs"), String(size)],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    let output = "";
    server.stdout.on("data", (data: Buffer) => {
      output += data;
    });
    const cache = new MemoryBackend(size);
    const presence = new ChunkBitmap(size / chunkSize);
    presence.setAll();
    // Every chunk is present, so faults are resolved natively and any thread may touch the region.
    const region = UffdRegion.create({
      size,
      chunkSize,
      presence,
      cache: { segments: cache.segments },
      dirtyTracking: true,
    });
    const control = new SharedArrayBuffer(8);
    const flags = new Int32Array(control);
    let writer: Worker | undefined;
    let remote: ConnectBackend | undefined;
    const stop = new AbortController();
    let replication: Promise<void> | undefined;
    try {
      region.buffer.fill(7, 0, size / 2);
      await until(() => output.includes("\n"), "the standby's URL");
      remote = await ConnectBackend.connect({ baseUrl: output.trim().replace("r3map+h2c", "http") });
      writer = new Worker(new URL("./fixtures/writer.mjs", import.meta.url), {
        workerData: { id: region.id, size, control },
      });
      const rounds: ReplicationRound[] = [];
      let synced = false;
      replication = replicate(
        memorySide(region.buffer),
        remoteSide(remote),
        dirtyPageChanges(size, () => region.scanDirty()),
        {
          intervalMs: 100,
          signal: stop.signal,
          onSynced: () => {
            synced = true;
          },
          onRound: (round) => rounds.push(round),
        },
      );
      await until(
        () => synced && rounds.filter((r) => r.chunks > 0).length >= 3,
        "three rounds that pushed writes",
      );
      expect(Atomics.load(flags, 1)).toBeGreaterThan(0);
      // The writer stops; a round that starts after that carries its last writes.
      Atomics.store(flags, 0, 1);
      await new Promise((resolve) => writer!.once("exit", resolve));
      const after = rounds.length;
      await until(() => rounds.length >= after + 2, "one more whole round");
      const copy = new Uint8Array(size);
      await remote.readAt(copy, 0);
      expect(Buffer.compare(copy, region.buffer), "the standby equals the region").toBe(0);
      stop.abort();
      await replication;
      expect(rounds.at(-1)?.final).toBe(true);
    } finally {
      Atomics.store(flags, 0, 1);
      await writer?.terminate();
      stop.abort();
      await replication?.catch(() => {});
      await remote?.close();
      region.close();
      server.kill("SIGTERM");
      await new Promise((resolve) => server.once("exit", resolve));
    }
  });
});
