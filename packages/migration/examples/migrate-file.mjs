// Live migration of a file mount, both hosts in one process for the example:
// `node packages/migration/examples/migrate-file.mjs` (as root, after pnpm build).
// A seeder mounts a disk image that an "application" keeps writing; a leecher
// takes it over (pre-copy while it writes, the last round, post-copy), checks
// the bytes, and seeds it on — the next host would leech from `next.url`.
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Leecher, Seeder } from "@r3map/migration";
import { MountCore } from "@r3map/mount";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "r3map-migration-example-"));
const image = path.join(dir, "disk.img");
fs.writeFileSync(image, randomBytes(64 * 1024 * 1024));

// Host A: the resource, mounted as a file; its engine runs on this thread, so the
// application writes through fs.promises (a libuv thread), never synchronously.
const source = await MountCore.open("file", { remote: `file://${image}`, chunkSize: 256 * 1024 });
let writing = true;
const application = (async () => {
  const handle = await fs.promises.open(source.handle.path, "r+");
  let writes = 0;
  while (writing) {
    await handle.write(randomBytes(4096), 0, 4096, Math.floor(Math.random() * 16383) * 4096);
    writes++;
  }
  await handle.close();
  return writes;
})();
const seeder = await Seeder.start(source, {
  hooks: {
    // The last round: suspend the application; what it wrote so far migrates.
    beforeSync: async () => {
      writing = false;
      console.log(`A: the application stopped after ${await application} writes`);
    },
  },
});
console.log(`A: seeding ${source.handle.path} at ${seeder.url}`);

// Host B: mounted at once, locked while every chunk is pulled.
const leecher = await Leecher.open(seeder.url, { as: "file" });
await new Promise((resolve) => {
  const pulled = (p) => p?.chunksLocal === p?.chunksTotal && resolve();
  leecher.on("progress", pulled);
  pulled(leecher.progress());
});
const { dirty, downtimeMs } = await leecher.finalize();
console.log(`B: unlocked after ${downtimeMs.toFixed(1)} ms; ${dirty.length} chunks changed during pre-copy`);
const owned = await leecher.release(); // every chunk is here; A let go
await seeder.migrated;

const [there, here] = await Promise.all([
  fs.promises.readFile(source.handle.path),
  fs.promises.readFile(leecher.path),
]);
console.log(`B: ${leecher.path} equals A's last round: ${Buffer.compare(there, here) === 0}`);

// B seeds what it owns now (a chain A → B → C).
const next = await Seeder.start(owned);
console.log(`B: seeding on at ${next.url}`);

await next.close();
await owned.close();
await seeder.close();
await source.close();
fs.rmSync(dir, { recursive: true, force: true });
