// Serves a 64 MiB memory backend over h2c with a bearer token, then reads and
// writes it as a Backend through a backend URI. Run after `pnpm build`:
//   node packages/transport-connect/examples/serve-and-read.mjs
import { MemoryBackend, openBackend } from "@r3map/core";
import { ConnectServer } from "@r3map/transport-connect";

const server = await ConnectServer.listen({
  backend: new MemoryBackend(64 * 1024 * 1024),
  tokens: ["change-me"],
  port: 0, // a free port
});
console.log(`serving on ${server.url}`);

// Importing @r3map/transport-connect registered the r3map+h2c: and r3map+https: schemes.
const remote = await openBackend(`${server.url}?token=change-me&sessions=2`);
await remote.writeAt(new TextEncoder().encode("hello over gRPC"), 4096);
const back = new Uint8Array(15);
await remote.readAt(back, 4096);
console.log(`size ${remote.size}, read back "${new TextDecoder().decode(back)}"`);

// A server-streaming bulk read of a range, in 1 MiB messages.
let bytes = 0;
for await (const { data } of remote.readStream(0, 8 * 1024 * 1024, { chunkSize: 1024 * 1024 }))
  bytes += data.length;
console.log(`streamed ${bytes} bytes`);

await remote.close();
await server.close();
