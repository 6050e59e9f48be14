import * as fs from "node:fs";
import { type BenchResult, mibPerSecond, result } from "../harness.js";
import { readFileSequentially } from "../mount-bench/workloads.js";
import type { ScratchMounts } from "../scratch-mounts.js";
import { type Prepared, PULL_WORKERS, type Subject } from "./subject.js";

const MiB = 1024 * 1024;
/** Throughput: a 64 MiB resource in 1 MiB chunks (the mount's default), pulled by 8 workers. */
const SIZE = 64 * MiB;
const CHUNK = MiB;
/** Latency: 4 KiB chunks, as the thesis measured, so one page crosses the network per miss. */
const LATENCY_SIZE = MiB;
const LATENCY_CHUNK = 4096;
const LATENCY_SAMPLES = 15;
/** Rounds of (baseline, mount), interleaved so noise hits both alike; the best of each is kept. */
const ROUNDS = 2;
/** A sequential read stops after this long; throughput is over what was moved. */
const CAP_MS = 10_000;

/** Milliseconds to read every chunk with the raw client, `concurrency` at a time, into fresh memory. */
async function rawReadAll(
  prepared: Prepared,
  size: number,
  chunkSize: number,
  concurrency: number,
): Promise<number> {
  const target = Buffer.allocUnsafe(size);
  const chunks = Math.ceil(size / chunkSize);
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < chunks) {
        const chunk = next++;
        const offset = chunk * chunkSize;
        await prepared.readChunk(chunk, target.subarray(offset, Math.min(size, offset + chunkSize)));
      }
    }),
  );
  const ms = performance.now() - start;
  if (!target.equals(prepared.source))
    throw new Error("the raw client read different bytes than were stored");
  return ms;
}

/** Milliseconds of a managed mount's cold sequential read (open and close excluded). */
async function mountReadAll(
  mounts: ScratchMounts,
  subject: Subject,
  prepared: Prepared,
): Promise<{ ms: number; bytes: number }> {
  const mount = await mounts.mountFile({
    remote: prepared.uri,
    schemes: subject.schemes,
    chunkSize: CHUNK,
    managed: { pull: { workers: PULL_WORKERS }, push: false },
  });
  try {
    return readFileSequentially(mount.path!, SIZE, prepared.source, CAP_MS);
  } finally {
    await mount.close();
  }
}

/** The chunks sampled for latency: spread over the resource, none read twice. */
function latencyChunks(): number[] {
  const chunks = LATENCY_SIZE / LATENCY_CHUNK;
  return Array.from({ length: LATENCY_SAMPLES }, (_, i) => (i * 17 + 3) % chunks);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Median µs of the first 4 KiB O_DIRECT read of cold chunks of a demand-only managed mount. */
async function mountFirstChunkUs(
  mounts: ScratchMounts,
  subject: Subject,
  prepared: Prepared,
): Promise<number> {
  const mount = await mounts.mountFile({
    remote: prepared.uri,
    schemes: subject.schemes,
    chunkSize: LATENCY_CHUNK,
    managed: { pull: false, push: false },
  });
  try {
    const fd = fs.openSync(mount.path!, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
    const page = Buffer.alloc(LATENCY_CHUNK);
    const samples: number[] = [];
    try {
      for (const chunk of latencyChunks()) {
        const offset = chunk * LATENCY_CHUNK;
        const start = performance.now();
        fs.readSync(fd, page, 0, LATENCY_CHUNK, offset);
        samples.push((performance.now() - start) * 1000);
        if (!page.equals(prepared.source.subarray(offset, offset + LATENCY_CHUNK)))
          throw new Error(`first-chunk read at ${offset}: wrong bytes`);
      }
    } finally {
      fs.closeSync(fd);
    }
    return median(samples);
  } finally {
    await mount.close();
  }
}

/** Median µs of the raw client reading one 4 KiB chunk (its connection already warm). */
async function rawChunkUs(prepared: Prepared): Promise<number> {
  const page = new Uint8Array(LATENCY_CHUNK);
  await prepared.readChunk(0, page); // warm the connection, as the mount's open did
  const samples: number[] = [];
  for (const chunk of latencyChunks()) {
    const start = performance.now();
    await prepared.readChunk(chunk, page);
    samples.push((performance.now() - start) * 1000);
  }
  return median(samples);
}

/**
 * A store's two rows: managed cold read throughput against its raw client
 * reading the same chunks, and first-chunk latency against one raw read.
 */
export async function measure(
  mounts: ScratchMounts,
  subject: Subject,
  log: (message: string) => void,
): Promise<BenchResult[]> {
  const big = await subject.prepare(SIZE, CHUNK);
  let rawMs = Number.POSITIVE_INFINITY;
  let mountRate = 0;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      rawMs = Math.min(rawMs, await rawReadAll(big, SIZE, CHUNK, subject.concurrency));
      const read = await mountReadAll(mounts, subject, big);
      mountRate = Math.max(mountRate, mibPerSecond(read.bytes, read.ms));
    }
  } finally {
    await big.close();
  }
  const small = await subject.prepare(LATENCY_SIZE, LATENCY_CHUNK);
  let rawUs: number;
  let mountUs: number;
  try {
    rawUs = await rawChunkUs(small);
    mountUs = await mountFirstChunkUs(mounts, subject, small);
  } finally {
    await small.close();
  }
  const rawRate = mibPerSecond(SIZE, rawMs);
  const o = subject.original;
  log(
    `${subject.name}: managed cold read ${mountRate.toFixed(0)} MiB/s (${subject.raw} ×${subject.concurrency}: ${rawRate.toFixed(0)}), ` +
      `first chunk ${mountUs.toFixed(0)} µs (${subject.raw}: ${rawUs.toFixed(0)} µs) | ` +
      `original (${o.label}): managed ${o.managedMBs} MB/s, direct ${o.directMBs} MB/s, first chunk ≈${o.latencyUs} µs`,
  );
  return [
    result(
      `backends: ${subject.name} managed cold read, 1 MiB chunks`,
      mountRate,
      "MiB/s",
      `${subject.raw} of the same chunks, ${subject.concurrency} in flight`,
      rawRate,
    ),
    result(
      `backends: ${subject.name} first-chunk latency, 4 KiB (lower is better)`,
      mountUs,
      "µs",
      `${subject.raw} of one 4 KiB chunk`,
      rawUs,
    ),
  ];
}
