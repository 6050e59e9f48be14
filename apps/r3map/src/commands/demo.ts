import { formatBytes, ManagedPipeline, MemoryBackend, parseSize } from "@r3map/core";

export interface DemoOptions {
  size: string;
  chunkSize: string;
  pullWorkers: string;
}

/** A deterministic byte pattern the demo can verify without keeping a copy. */
function patternByte(offset: number, seed: number): number {
  return (Math.imul(offset ^ seed, 2654435761) >>> 24) & 0xff;
}

function fillPattern(bytes: Uint8Array, offset: number, seed: number): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] = patternByte(offset + i, seed);
}

const rate = (bytes: number, ms: number) => `${formatBytes((bytes / ms) * 1000)}/s`;
const say = (text: string) => process.stderr.write(`${text}\n`);

/**
 * The engine on embedded defaults: a "remote" memory backend holding a known
 * pattern, a managed pipeline with an empty local cache in front of it, a
 * workload that reads and writes while the background pull runs, then a
 * byte-for-byte check of the local view and of the remote after close.
 */
export async function demo(options: DemoOptions): Promise<void> {
  const size = parseSize(options.size);
  const chunkSize = parseSize(options.chunkSize);
  const workers = Number(options.pullWorkers);
  const remote = new MemoryBackend(size);
  for (let offset = 0; offset < size; offset += chunkSize) {
    const chunk = new Uint8Array(Math.min(chunkSize, size - offset));
    fillPattern(chunk, offset, 1);
    await remote.writeAt(chunk, offset);
  }
  say(
    `remote: ${formatBytes(size)} in memory, ${Math.ceil(size / chunkSize)} chunks of ${formatBytes(chunkSize)}`,
  );

  const pipeline = new ManagedPipeline({
    remote,
    local: new MemoryBackend(size),
    chunkSize,
    pull: { workers },
    push: { workers: 4, intervalMs: 50 },
    closeBackends: false,
  });
  const started = performance.now();
  pipeline.start();

  // While the puller works: read a few regions (demand fetches jump ahead), overwrite one.
  const probe = new Uint8Array(Math.min(size, 64 * 1024));
  const expected = new Uint8Array(probe.length);
  const firstRead = performance.now();
  await pipeline.backend.readAt(probe, size - probe.length);
  const firstMs = performance.now() - firstRead;
  fillPattern(expected, size - probe.length, 1);
  if (Buffer.compare(probe, expected) !== 0) throw new Error("the first read returned wrong bytes");
  say(`first read of the last ${formatBytes(probe.length)} while pulling: ${firstMs.toFixed(2)} ms`);

  const written = { offset: Math.floor(size / 3) + 123, length: Math.min(size / 4, 8 * 1024 * 1024) };
  const update = new Uint8Array(written.length);
  fillPattern(update, written.offset, 2);
  await pipeline.backend.writeAt(update, written.offset);
  say(`wrote ${formatBytes(written.length)} at an unaligned offset (${written.offset})`);

  await pipeline.pulled();
  const pulledMs = performance.now() - started;
  const progress = pipeline.progress();
  say(
    `pulled in the background: ${progress.chunksLocal}/${progress.chunksTotal} chunks local, ` +
      `${formatBytes(progress.bytesPulled)} fetched in ${pulledMs.toFixed(0)} ms (${rate(progress.bytesPulled, pulledMs)}), ` +
      `mean fetch ${progress.meanFetchMs.toFixed(3)} ms`,
  );

  const readStart = performance.now();
  const all = new Uint8Array(size);
  await pipeline.backend.readAt(all, 0);
  const readMs = performance.now() - readStart;
  verify(all, written, "local view");
  say(`read all ${formatBytes(size)} back from the local cache: ${rate(size, readMs)}, every byte correct`);

  await pipeline.close();
  const remoteBytes = new Uint8Array(size);
  await remote.readAt(remoteBytes, 0);
  verify(remoteBytes, written, "remote");
  const pushed = pipeline.progress().bytesPushed;
  say(`closed: pushed ${formatBytes(pushed)} back; the remote now equals the local view byte for byte`);
  await remote.close();
}

function verify(bytes: Uint8Array, written: { offset: number; length: number }, what: string): void {
  for (let offset = 0; offset < bytes.length; offset++) {
    const inUpdate = offset >= written.offset && offset < written.offset + written.length;
    if (bytes[offset] !== patternByte(offset, inUpdate ? 2 : 1)) {
      throw new Error(`${what}: byte ${offset} is wrong`);
    }
  }
}
