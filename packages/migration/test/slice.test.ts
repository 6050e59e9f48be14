import { testRandom, waitFor } from "@r3map/core/testing";
/**
 * A 256 MiB slice migrated while its application — a worker thread keeping
 * a checksum invariant in every chunk — runs on the seeder; the application
 * is suspended in beforeSync, resumes on the leecher and finds its invariant
 * intact, and the memory is migrated on again (A → B → C).
 */
import { MountCore } from "@r3map/mount";
import { describe, expect, it } from "vitest";
import { Leecher, Seeder } from "../src/index.js";
import { hashSlice, SliceApp } from "./app.js";
import { testFileScope } from "./helpers.js";

const size = 256 * 1024 * 1024;
const chunkSize = 64 * 1024;
const { cleanup } = testFileScope();

/**
 * Migrates the slice `core`, where `app` runs, to a new slice leecher: the
 * app is suspended (and the memory hashed) in beforeSync; returns the
 * released leecher's core and both hashes.
 */
async function migrate(core: MountCore, app: SliceApp) {
  let seederHash = "";
  const seeder = cleanup.add(
    await Seeder.start(core, {
      hooks: {
        beforeSync: async () => {
          await app.suspend();
          seederHash = await hashSlice(core.handle.regionId!, size, chunkSize);
        },
      },
    }),
    (s) => s.close(),
  );
  const leecher = cleanup.add(await Leecher.open(seeder.url, { as: "slice", pullWorkers: 8 }), (l) =>
    l.close(),
  );
  await waitFor(() => (leecher.progress()?.chunksLocal ?? 0) > size / chunkSize / 4, {
    timeoutMs: 60_000,
    message: "a quarter of the pull",
  });
  const { dirty } = await leecher.finalize();
  const seederRun = await app.exit();
  expect(seederRun.broken, "chunks whose invariant broke on the seeder").toBe(0);
  expect(seederRun.updates).toBeGreaterThan(0);
  expect(dirty.length).toBeGreaterThan(0);
  // Post-copy: the memory reads as the seeder's did at its last round, fetched or not.
  expect(await hashSlice(leecher.core.handle.regionId!, size, chunkSize)).toBe(seederHash);
  return { leecher, seeder };
}

describe("slice migration", () => {
  it("the application moves A → B → C with its invariant intact and its memory equal", async () => {
    const seed = testRandom().seed; // printed on failure; R3MAP_TEST_SEED replays it
    const a = cleanup.add(await MountCore.open("slice", { remote: `memory:?size=${size}`, chunkSize }), (c) =>
      c.close(),
    );
    const appA = cleanup.add(new SliceApp(a.handle.regionId!, size, chunkSize, seed, "run"), (app) =>
      app.terminate(),
    );

    const toB = await migrate(a, appA);
    const appB = cleanup.add(
      new SliceApp(toB.leecher.core.handle.regionId!, size, chunkSize, seed + 1, "verify"),
      (app) => app.terminate(),
    );
    expect((await appB.next("verified")).broken, `invariant on B (seed ${seed})`).toBe(0);
    const b = await toB.leecher.release();
    await toB.seeder.migrated;

    const toC = await migrate(b, appB);
    const appC = cleanup.add(
      new SliceApp(toC.leecher.core.handle.regionId!, size, chunkSize, seed + 2, "verify"),
      (app) => app.terminate(),
    );
    expect((await appC.next("verified")).broken, `invariant on C (seed ${seed})`).toBe(0);
    await toC.leecher.release();
    expect((await appC.exit()).broken).toBe(0);
  });
});
