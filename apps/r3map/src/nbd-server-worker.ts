/**
 * The demo's remote: a memory backend holding generation 1 of the pattern,
 * served over NBD on 127.0.0.1 from a worker thread (so that the main thread
 * may block on a mount while the remote keeps answering).
 */
import { parentPort, workerData } from "node:worker_threads";
import { MemoryBackend } from "@r3map/core";
import { NbdServer } from "@r3map/nbd";
import { fillPattern } from "./pattern.js";

const { size } = workerData as { size: number };
const backend = new MemoryBackend(size);
for (const segment of backend.segments) {
  const start = backend.segments.indexOf(segment) * backend.segments[0]!.length;
  fillPattern(segment, start, 1);
}
const server = new NbdServer({ exports: [{ name: "demo", backend, description: "r3map demo memory" }] });
const address = await server.listen({ port: 0, host: "127.0.0.1" });
parentPort!.postMessage({ port: typeof address === "string" ? 0 : address.port });
parentPort!.once("message", async () => {
  await server.close();
  parentPort!.postMessage("closed");
});
