// The runnable twin of managed.ts (plain JavaScript): node packages/core/examples/managed.mjs
import { ManagedPipeline, MemoryBackend } from "@r3map/core";

const remote = MemoryBackend.from(new TextEncoder().encode("hello from the remote side".padEnd(4096, ".")));
const pipeline = new ManagedPipeline({
  remote,
  local: new MemoryBackend(remote.size),
  chunkSize: 1024,
  pull: { workers: 2 },
  push: { intervalMs: 1000 },
});
pipeline.on("progress", (p) =>
  console.log(`local ${p.chunksLocal}/${p.chunksTotal}, pushed ${p.bytesPushed} B`),
);
pipeline.start();

const greeting = new Uint8Array(26);
await pipeline.backend.readAt(greeting, 0); // fetched on demand, or already pulled
console.log(new TextDecoder().decode(greeting));

await pipeline.backend.writeAt(new TextEncoder().encode("HELLO"), 0); // partial chunk: read-modify-write
await pipeline.sync(); // pushed to the remote and synced there
await pipeline.close();
