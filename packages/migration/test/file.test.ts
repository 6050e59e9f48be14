/**
 * A 256 MiB file mount migrated while a writer changes it throughout
 * pre-copy, and migrated on again (A → B → C): each leecher ends with the
 * seeder's final bytes.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { type SeededRandom, testRandom, waitFor } from "@r3map/core/testing";
import { MountCore } from "@r3map/mount";
import { describe, expect, it } from "vitest";
import { Leecher, Seeder } from "../src/index.js";
import { expectFileEquals, FileWriter, testFileScope } from "./helpers.js";

const size = 256 * 1024 * 1024;
const chunkSize = 256 * 1024;
const { scratch, cleanup } = testFileScope();

/**
 * Seeds `core` to a new file leecher while a writer changes the seeder's file
 * until the last round; returns the leecher once released, and the model of
 * what the resource holds.
 */
async function migrate(core: MountCore, model: Buffer, random: SeededRandom) {
  let writer: FileWriter | undefined;
  let writes = 0;
  const seeder = cleanup.add(
    await Seeder.start(core, {
      hooks: {
        // The application is suspended: its last write has landed when this returns.
        beforeSync: async () => {
          writes = (await writer?.stop()) ?? 0;
        },
      },
    }),
    (s) => s.close(),
  );
  const leecher = cleanup.add(await Leecher.open(seeder.url, { as: "file", pullWorkers: 8 }), (l) =>
    l.close(),
  );
  expect(leecher.phase).toBe("pre-copy");
  writer = new FileWriter(core.handle.path!, model, random);
  // Pre-copy runs while the application writes: wait until some of it has arrived.
  await waitFor(() => (leecher.progress()?.chunksLocal ?? 0) > size / chunkSize / 4, {
    timeoutMs: 60_000,
    message: "a quarter of the pull",
  });
  const { dirty, downtimeMs } = await leecher.finalize();
  expect(writes).toBeGreaterThan(0);
  expect(dirty.length).toBeGreaterThan(0);
  expect(downtimeMs).toBeGreaterThan(0);
  const owned = await leecher.release();
  await seeder.migrated;
  expect(seeder.phase).toBe("migrated");
  return { leecher, owned, seeder };
}

describe("file mount migration", () => {
  it("A → B → C with a writer throughout each pre-copy: every leecher ends with the seeder's final bytes", async () => {
    const random = testRandom(); // printed on failure; R3MAP_TEST_SEED replays it
    const seed = random.seed;
    const image = path.join(scratch, "a.img");
    const model = random.bytes(size);
    fs.writeFileSync(image, model);
    const a = cleanup.add(await MountCore.open("file", { remote: `file://${image}`, chunkSize }), (c) =>
      c.close(),
    );

    const toB = await migrate(a, model, random);
    // A refuses writes after its last round: what it would write now is not migrated.
    const late = await fs.promises.open(a.handle.path!, "r+");
    await expect(late.write(Buffer.from("late"), 0, 4, 4096)).rejects.toMatchObject({ code: "EROFS" });
    await late.close();
    await expectFileEquals(toB.leecher.path!, model, seed);

    // B seeds what it now owns; its application writes again during C's pre-copy.
    const toC = await migrate(toB.owned, model, random);
    await expectFileEquals(toC.leecher.path!, model, seed);
    expect(toC.leecher.phase).toBe("released");
  });
});
