import { Worker } from "node:worker_threads";
import type { Output } from "@r3map/cli-kit";
import { formatBytes } from "@r3map/core";
import { Leecher, Seeder } from "@r3map/migration";
import { MountCore, type MountDescription } from "@r3map/mount";

/** `Atomics.waitAsync` (in Node since 16; not in the TypeScript lib this project targets). */
const waitAsync = (
  Atomics as unknown as {
    waitAsync(view: Int32Array, index: number, value: number): { async: boolean; value: unknown };
  }
).waitAsync;

/** A worker of `demo-memory-worker.ts` over a slice's memory; resolves with its one message. */
function memoryWorker(
  mode: "write" | "hash",
  core: MountCore,
  control?: SharedArrayBuffer,
): { worker: Worker; result: Promise<Record<string, unknown>> } {
  const worker = new Worker(new URL("./demo-memory-worker.js", import.meta.url), {
    workerData: { mode, regionId: core.handle.regionId, size: core.handle.size, control },
  });
  const result = new Promise<Record<string, unknown>>((resolve, reject) => {
    worker.once("message", resolve).once("error", reject);
    worker.once("exit", (code) => reject(new Error(`the ${mode} thread exited (${code}) without a result`)));
  });
  result.catch(() => {});
  return { worker, result };
}

async function hashOf(core: MountCore): Promise<string> {
  const { worker, result } = memoryWorker("hash", core);
  try {
    return (await result).sha256 as string;
  } finally {
    await worker.terminate();
  }
}

export interface MigrationDemoResult {
  downtimeMs: number;
  dirtyChunks: number;
  writes: number;
  totalMs: number;
}

/**
 * The demo's migration step: the remote mounted again as a slice (the
 * seeder's memory) while an application thread keeps writing into it, a
 * second slice leeching it (pre-copy), the application stopped at the last
 * round, the second slice unlocked (downtime), the rest pulled (post-copy),
 * and both memories hashed: they must be equal. Both mounts' engines run on
 * this thread, so the application and the hashes run on worker threads.
 */
export async function migrationDemo(
  description: MountDescription,
  pullWorkers: number,
  output: Output,
): Promise<MigrationDemoResult> {
  const say = (text: string) => output.say(text);
  // Its writes stay here: the seeder's memory is what migrates, not the remote's copy.
  const seeded = await MountCore.open("slice", {
    ...description,
    managed: { ...description.managed, push: false },
  });
  const closers: Array<() => Promise<unknown>> = [() => seeded.close()];
  try {
    const control = new SharedArrayBuffer(8);
    const state = new Int32Array(control);
    const app = memoryWorker("write", seeded, control);
    closers.push(() => app.worker.terminate());
    let writes = 0;
    const seeder = await Seeder.start(seeded, {
      hooks: {
        // The last round: the application stops between two writes. The memory stays as it is then
        // (the seeder refuses writes from now on), so it is hashed after the migration, off the downtime.
        beforeSync: async () => {
          Atomics.store(state, 0, 1);
          writes = (await app.result).writes as number;
        },
      },
    });
    closers.push(() => seeder.close());
    say(
      `\nmigration: the remote mounted again as a slice (the seeder's memory, ${formatBytes(seeded.handle.size)}), an application thread writing into it, seeded at ${seeder.url}`,
    );
    const started = performance.now();
    const leecher = await Leecher.open(seeder.url, { as: "slice", pullWorkers: Math.max(1, pullWorkers) });
    closers.push(() => leecher.close());
    // Tracking began before open resolved: the next write is one the last round must hand over.
    const writtenBefore = Atomics.load(state, 1);
    const { size } = leecher;
    const chunkSize = leecher.core.engine.chunkSize;
    // Pre-copy while the application writes; the last round comes once it has caught up once.
    await new Promise<void>((resolve) => {
      const report = (chunksLocal: number) => {
        const done = Math.min(size, chunksLocal * chunkSize);
        output.progress({ label: "pre-copy", done, total: size });
        if (done === size) resolve();
      };
      leecher.on("progress", (progress) => report(progress.chunksLocal));
      report(leecher.progress()?.chunksLocal ?? 0);
    });
    const waiting = waitAsync(state, 1, writtenBefore);
    if (waiting.async) await waiting.value;
    const { dirty, downtimeMs } = await leecher.finalize();
    say(
      `  pre-copy done while the application wrote; last round: it stopped after ${writes} writes, ${dirty.length} chunk(s) changed meanwhile`,
    );
    say(
      `  second slice unlocked after ${downtimeMs.toFixed(1)} ms of downtime; the changed chunks come first, on demand or in the background`,
    );
    await leecher.release();
    const totalMs = performance.now() - started;
    await seeder.migrated;
    say(`  every chunk here after ${totalMs.toFixed(0)} ms; the seeder let go`);
    const [seederHash, leecherHash] = [await hashOf(seeded), await hashOf(leecher.core)];
    if (leecherHash !== seederHash) {
      throw new Error(
        `migration: the second slice's memory (sha256 ${leecherHash}) differs from the seeder's at its last round (${seederHash})`,
      );
    }
    say(
      `  the second slice holds the seeder's memory at its last round, byte for byte (sha256 ${seederHash.slice(0, 16)}…)`,
    );
    return { downtimeMs, dirtyChunks: dirty.length, writes, totalMs };
  } finally {
    for (const close of closers.reverse()) await close().catch(() => {});
  }
}
