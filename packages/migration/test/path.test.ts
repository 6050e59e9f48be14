/**
 * A 256 MiB path mount (a block device) carrying ext4, mounted and written
 * during pre-copy and unmounted in beforeSync, migrated to a leecher whose
 * device then holds the same bytes and a clean file system with every file.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { testRandom, waitFor } from "@r3map/core/testing";
import { MountCore } from "@r3map/mount";
import { describe, expect, it } from "vitest";
import { Leecher, Seeder } from "../src/index.js";
import { testFileScope } from "./helpers.js";

// Child processes only, never a synchronous call: this thread runs both mounts' engines.
const run = promisify(execFile);
const size = 256 * 1024 * 1024;
const chunkSize = 256 * 1024;
const { scratch, cleanup } = testFileScope();

async function sha256Of(file: string): Promise<string> {
  return createHash("sha256")
    .update(await fs.promises.readFile(file))
    .digest("hex");
}

async function mountExt4(device: string, name: string): Promise<string> {
  const dir = path.join(scratch, name);
  fs.mkdirSync(dir, { recursive: true });
  await run("mount", ["-t", "ext4", device, dir]);
  cleanup.add(dir, (d) => run("umount", [d]).catch(() => run("umount", ["-l", d])));
  return dir;
}

describe("path mount migration", () => {
  it("ext4 written during pre-copy, unmounted in beforeSync: the leecher's device is byte-equal, fsck-clean, files intact", async () => {
    const random = testRandom(); // printed on failure; R3MAP_TEST_SEED replays it
    const seed = random.seed;
    const image = path.join(scratch, "a.img");
    fs.writeFileSync(image, Buffer.alloc(0));
    fs.truncateSync(image, size);
    const a = cleanup.add(await MountCore.open("path", { remote: `file://${image}`, chunkSize }), (c) =>
      c.close(),
    );
    await run("mkfs.ext4", ["-q", "-F", a.handle.path!]);
    const mounted = await mountExt4(a.handle.path!, "a");

    // The application: writes files until the last round begins, then the file system is unmounted.
    const files = new Map<string, string>();
    let stopping = false;
    const writing = (async () => {
      for (let i = 0; !stopping; i++) {
        const data = random.bytes(4096 + random.below(512 * 1024));
        const name = `f${i % 200}`;
        await fs.promises.writeFile(path.join(mounted, name), data);
        files.set(name, createHash("sha256").update(data).digest("hex"));
      }
    })();
    let seederHash = "";
    const seeder = cleanup.add(
      await Seeder.start(a, {
        hooks: {
          beforeSync: async () => {
            stopping = true;
            await writing;
            await run("umount", [mounted]);
            seederHash = await sha256Of(a.handle.path!);
          },
        },
      }),
      (s) => s.close(),
    );
    const leecher = cleanup.add(await Leecher.open(seeder.url, { as: "path", pullWorkers: 8 }), (l) =>
      l.close(),
    );
    await waitFor(() => (leecher.progress()?.chunksLocal ?? 0) > size / chunkSize / 4, {
      timeoutMs: 60_000,
      message: "a quarter of the pull",
    });
    const { dirty } = await leecher.finalize();
    expect(files.size).toBeGreaterThan(0);
    expect(dirty.length).toBeGreaterThan(0);

    const device = leecher.path!;
    expect(await sha256Of(device), `device bytes (seed ${seed})`).toBe(seederHash);
    await run("e2fsck", ["-fn", device]);
    const there = await mountExt4(device, "b");
    for (const [name, hash] of files) {
      expect(await sha256Of(path.join(there, name)), `${name} (seed ${seed})`).toBe(hash);
    }
    await run("umount", [there]);
    await leecher.release();
    await seeder.migrated;
  });
});
