// Runnable after `pnpm build`: node packages/sync/examples/push.mjs
// Serves a stale 64 MiB copy over Connect (the server hashes its own copy),
// changes a few pages of the local copy, and pushes only what differs.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { FileBackend } from "@r3map/core";
import { openLocalPath, remoteSide, syncDelta } from "@r3map/sync";
import { ConnectBackend, ConnectServer } from "@r3map/transport-connect";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "r3map-sync-example-"));
const size = 64 * 1024 * 1024;
const bytes = Buffer.alloc(size, 1);
fs.writeFileSync(path.join(dir, "remote.img"), bytes);
for (const page of [3, 700, 16_383]) bytes[page * 4096] = 2;
fs.writeFileSync(path.join(dir, "local.img"), bytes);

const served = FileBackend.open(path.join(dir, "remote.img"));
const server = await ConnectServer.listen({ backend: served }); // digests: native, registered by @r3map/sync's import of @r3map/native
const remote = await ConnectBackend.connect({ baseUrl: server.baseUrl });
const local = openLocalPath(path.join(dir, "local.img"));
const report = await syncDelta(local, remoteSide(remote), { check: true });
console.log(
  `moved ${report.chunksMoved} chunks (${report.bytesMoved} bytes) after ${report.digestBytes} bytes of digests`,
);
await local.backend.close();
await remote.close();
await server.close();
await served.close();
fs.rmSync(dir, { recursive: true });
