// A managed file mount of an in-memory remote: `node packages/mount/examples/file.mjs` (as root, after pnpm build).
// Swap the URI for nbd://host:port/export, r3map+h2c://host:port, redis://…, s3://… to mount a real remote.
import * as fs from "node:fs";
import { mountFile } from "@r3map/mount";

const file = await mountFile({
  remote: "memory:?size=64MiB",
  chunkSize: 1024 * 1024,
  managed: { pull: { workers: 8 }, push: { intervalMs: 1000 } },
});
const fd = fs.openSync(file.path, "r+"); // the file has a fixed size: open it r+, never truncate it
fs.writeSync(fd, Buffer.from("hello from a file mount"), 0, 23, 4096);
fs.closeSync(fd);
console.log(
  file.path,
  fs.statSync(file.path).size,
  fs.readFileSync(file.path).subarray(4096, 4119).toString(),
);
console.log(await file.progress());
await file.close();
