/**
 * The thesis' §4.13 "backends at 0 ms" on our managed file mounts: cold
 * sequential read throughput and first-chunk latency with the remote in
 * memory, a file, a chunk directory, Redis, S3 (Ceph radosgw) and Cassandra 5.
 * Every figure sits next to the same bytes read with the store's own client
 * directly, in the same run (memcpy, fs.readSync, ioredis GET, S3 GetObject,
 * Cassandra SELECT), and the original r3map's figures are logged beside them.
 *
 * The stores run on 127.0.0.1, started by scripts/servers (a backend whose
 * server cannot start is skipped with the reason). The main thread reads the
 * mounts synchronously; the engines run on their worker threads.
 */
import { execFile } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { openCassandraStore, quoteIdentifier } from "@r3map/backend-cassandra";
import { openRedisStore } from "@r3map/backend-redis";
import { openS3Store } from "@r3map/backend-s3";
import { MemoryBackend, openBackend } from "@r3map/core";
import { type Benchmark, type BenchResult, mibPerSecond, result } from "../harness.js";
import { readFileSequentially } from "../mount-bench/workloads.js";
import { ScratchMounts } from "../scratch-mounts.js";

const MiB = 1024 * 1024;
/** Throughput: a 64 MiB resource in 1 MiB chunks (the mount's default), pulled by 8 workers. */
const SIZE = 64 * MiB;
const CHUNK = MiB;
const PULL_WORKERS = 8;
/** Latency: 4 KiB chunks, as the thesis measured, so one page crosses the network per miss. */
const LATENCY_SIZE = MiB;
const LATENCY_CHUNK = 4096;
const LATENCY_SAMPLES = 15;
/** Rounds of (baseline, mount), interleaved so noise hits both alike; the best of each is kept. */
const ROUNDS = 2;
/** A sequential read stops after this long; throughput is over what was moved. */
const CAP_MS = 10_000;
const SERVER_START_MS = 120_000;

/** The original r3map's figures (thesis.md §4.13, §6 items 9–11), in MB/s and µs. */
interface Original {
  managedMBs: number;
  directMBs: number;
  latencyUs: number;
  label: string;
}

/** A remote with known content, and the store's own client reading one chunk of it. */
interface Prepared {
  uri: string;
  source: Buffer;
  readChunk(chunk: number, into: Uint8Array): void | Promise<void>;
  close(): Promise<void>;
}

interface Subject {
  name: string;
  /** The raw client's read, for the baseline's label. */
  raw: string;
  /** Packages the mount's engine imports for the URI scheme (resolved here, so any cwd works). */
  schemes: string[];
  /** Raw-client reads in flight for the throughput baseline (the pull's workers for network stores). */
  concurrency: number;
  original: Original;
  prepare(size: number, chunkSize: number): Promise<Prepared>;
}

type Env = Record<string, string>;

const here = path.dirname(fileURLToPath(import.meta.url));

/** scripts/servers of this checkout (from src/benches or dist/benches). */
function serversDir(): string | undefined {
  for (let dir = here; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const candidate = path.join(dir, "scripts", "servers");
    if (fs.existsSync(path.join(candidate, "lib.sh"))) return candidate;
  }
  return undefined;
}

function runServerScript(name: string, action: string, state: string): Promise<Env> {
  const dir = serversDir();
  if (!dir) return Promise.reject(new Error("scripts/servers not found above the bench"));
  return new Promise((resolve, reject) => {
    execFile(
      "bash",
      [path.join(dir, `${name}.sh`), action, state],
      {
        timeout: SERVER_START_MS,
        killSignal: "SIGKILL",
        // The scripts' watchdog stops the server if this process dies first.
        env: { ...process.env, R3MAP_SERVER_OWNER_PID: String(process.pid) },
      },
      (error, stdout, stderr) => {
        if (error) {
          reject(
            new Error(
              `${name}.sh ${action}: ${error.message.split("\n")[0]} ${stderr.trim().split("\n").at(-1) ?? ""}`,
            ),
          );
          return;
        }
        const env: Env = {};
        for (const line of stdout.split("\n")) {
          const at = line.indexOf("=");
          if (at > 0) env[line.slice(0, at)] = line.slice(at + 1);
        }
        resolve(env);
      },
    );
  });
}

function withParams(base: string, params: Record<string, string | number>): string {
  const url = new URL(base);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, String(value));
  return url.toString();
}

/** Writes `source` through the backend the URI names (registers nothing: the scheme package is imported above). */
async function seed(uri: string, source: Buffer): Promise<void> {
  const backend = await openBackend(uri);
  try {
    await backend.writeAt(source, 0);
    await backend.sync();
  } finally {
    await backend.close();
  }
}

function copyInto(into: Uint8Array, bytes: Uint8Array | null | undefined): void {
  if (!bytes || bytes.length !== into.length)
    throw new Error("the raw client returned a chunk of the wrong size");
  into.set(bytes);
}

function memorySubject(): Subject {
  return {
    name: "memory",
    raw: "memcpy",
    schemes: [],
    concurrency: 1,
    original: { managedMBs: 2178, directMBs: 1630, latencyUs: 70, label: "Memory" },
    async prepare(size, chunkSize) {
      // memory: in the engine's worker starts as zeros; the baseline copies zeros from the same kind of backend.
      const memory = new MemoryBackend(size);
      const segment = memory.segments[0]!;
      return {
        uri: `memory:?size=${size}`,
        source: Buffer.alloc(size),
        readChunk: (chunk, into) =>
          into.set(segment.subarray(chunk * chunkSize, chunk * chunkSize + into.length)),
        close: () => memory.close(),
      };
    },
  };
}

function fileSubject(scratch: string): Subject {
  return {
    name: "file",
    raw: "fs.readSync",
    schemes: [],
    concurrency: 1,
    original: { managedMBs: 2372, directMBs: 2081, latencyUs: 155, label: "File" },
    async prepare(size, chunkSize) {
      const file = path.join(scratch, `remote-${randomUUID()}.img`);
      const source = randomBytes(size);
      fs.writeFileSync(file, source);
      const fd = fs.openSync(file, "r");
      return {
        uri: `file://${file}`,
        source,
        readChunk: (chunk, into) => {
          fs.readSync(fd, into, 0, into.length, chunk * chunkSize);
        },
        close: async () => fs.closeSync(fd),
      };
    },
  };
}

function directorySubject(scratch: string): Subject {
  return {
    name: "directory",
    raw: "fs.readSync of the chunk file",
    schemes: [],
    concurrency: 1,
    original: { managedMBs: 264, directMBs: 79, latencyUs: 75, label: "Directory" },
    async prepare(size, chunkSize) {
      const dir = path.join(scratch, `chunks-${randomUUID()}`);
      fs.mkdirSync(dir);
      const uri = `dir://${dir}?size=${size}&chunk=${chunkSize}`;
      const source = randomBytes(size);
      await seed(uri, source);
      return {
        uri,
        source,
        // Chunk files are named by their byte offset, as DirectoryBackend (and the original) lays them out.
        readChunk: (chunk, into) => {
          const fd = fs.openSync(path.join(dir, String(chunk * chunkSize)), "r");
          try {
            fs.readSync(fd, into, 0, into.length, 0);
          } finally {
            fs.closeSync(fd);
          }
        },
        close: async () => {},
      };
    },
  };
}

function redisSubject(env: Env): Subject {
  return {
    name: "redis",
    raw: "ioredis GET",
    schemes: [import.meta.resolve("@r3map/backend-redis")],
    concurrency: PULL_WORKERS,
    original: { managedMBs: 439, directMBs: 114, latencyUs: 200, label: "Redis" },
    async prepare(size, chunkSize) {
      const uri = withParams(env.REDIS_URL!, { size, chunk: chunkSize, prefix: `bench:${randomUUID()}:` });
      const source = randomBytes(size);
      await seed(uri, source);
      const store = await openRedisStore(uri);
      return {
        uri,
        source,
        readChunk: async (chunk, into) => copyInto(into, await store.client.getBuffer(store.keyOf(chunk))),
        close: () => store.close(),
      };
    },
  };
}

function s3Subject(env: Env): Subject {
  return {
    name: "s3",
    raw: "S3 GetObject",
    schemes: [import.meta.resolve("@r3map/backend-s3")],
    concurrency: PULL_WORKERS,
    original: { managedMBs: 44, directMBs: 8, latencyUs: 745, label: "S3/Minio" },
    async prepare(size, chunkSize) {
      const credentials = `${encodeURIComponent(env.S3_ACCESS_KEY!)}:${encodeURIComponent(env.S3_SECRET_KEY!)}`;
      const bucket = `bench-${randomUUID().slice(0, 8)}`;
      const uri = withParams(`s3://${credentials}@${bucket}/disk`, {
        endpoint: env.S3_ENDPOINT!,
        region: env.S3_REGION!,
        create: 1,
        size,
        chunk: chunkSize,
      });
      const source = randomBytes(size);
      await seed(uri, source);
      const store = await openS3Store(uri);
      return {
        uri,
        source,
        readChunk: async (chunk, into) => {
          const reply = await store.client.send(
            new GetObjectCommand({ Bucket: bucket, Key: store.keyOf(chunk) }),
          );
          copyInto(into, await reply.Body?.transformToByteArray());
        },
        close: () => store.close(),
      };
    },
  };
}

function cassandraSubject(env: Env): Subject {
  return {
    name: "cassandra",
    raw: "Cassandra SELECT",
    schemes: [import.meta.resolve("@r3map/backend-cassandra")],
    concurrency: PULL_WORKERS,
    original: { managedMBs: 698, directMBs: 3, latencyUs: 1125, label: "ScyllaDB" },
    async prepare(size, chunkSize) {
      const keyspace = "r3map_bench";
      const table = "chunks";
      const uri = withParams(
        `cassandra://${env.CASSANDRA_USER}:${env.CASSANDRA_PASSWORD}@${env.CASSANDRA_HOST}:${env.CASSANDRA_PORT}/${keyspace}/${table}`,
        { localDataCenter: env.CASSANDRA_DC!, create: 1, size, chunk: chunkSize, prefix: randomUUID() },
      );
      const source = randomBytes(size);
      await seed(uri, source);
      const store = await openCassandraStore(uri);
      const select = `SELECT data FROM ${quoteIdentifier(keyspace)}.${quoteIdentifier(table)} WHERE key = ? LIMIT 1`;
      return {
        uri,
        source,
        readChunk: async (chunk, into) => {
          const reply = await store.client.execute(select, [Buffer.from(store.keyOf(chunk))], {
            prepare: true,
          });
          copyInto(into, reply.first()?.get("data") as Buffer | undefined);
        },
        close: () => store.close(),
      };
    },
  };
}

/** The run's file mounts (set by `run`). */
let mounts: ScratchMounts;

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
async function mountReadAll(subject: Subject, prepared: Prepared): Promise<{ ms: number; bytes: number }> {
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
async function mountFirstChunkUs(subject: Subject, prepared: Prepared): Promise<number> {
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

async function measure(subject: Subject, log: (message: string) => void): Promise<BenchResult[]> {
  const big = await subject.prepare(SIZE, CHUNK);
  let rawMs = Number.POSITIVE_INFINITY;
  let mountRate = 0;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      rawMs = Math.min(rawMs, await rawReadAll(big, SIZE, CHUNK, subject.concurrency));
      const read = await mountReadAll(subject, big);
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
    mountUs = await mountFirstChunkUs(subject, small);
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

const SERVERS = [
  { name: "redis", script: "redis", subject: redisSubject },
  { name: "s3", script: "radosgw", subject: s3Subject },
  { name: "cassandra", script: "cassandra", subject: cassandraSubject },
] as const;

const benchmark: Benchmark = {
  name: "backends",
  description:
    "managed-mount cold read and first-chunk latency over memory, file, directory, Redis, S3 (radosgw), Cassandra vs each store's raw client",
  skip() {
    if (process.getuid?.() !== 0) return "needs root (FUSE mounts)";
    if (!fs.existsSync("/dev/fuse")) return "no /dev/fuse";
    return undefined;
  },
  async run({ scratch, log }) {
    log(
      "original r3map (thesis §4.13, 0 ms, managed / direct MB/s, first-chunk µs): file 2372/2081/155, memory 2178/1630/70, " +
        "ScyllaDB 698/3/1125, Redis 439/114/200, directory 264/79/75, S3 (Minio) 44/8/745; " +
        "here: 1 MiB chunks for throughput (MiB/s), 4 KiB chunks for latency, Cassandra 5 instead of ScyllaDB, Ceph radosgw instead of Minio",
    );
    mounts = new ScratchMounts(scratch);
    // The servers boot in parallel (radosgw ≈ 12 s, Cassandra ≈ 8 s) while nothing is measured.
    const started = await Promise.all(
      SERVERS.map(async (server) => {
        const state = path.join(scratch, `server-${server.script}`);
        fs.mkdirSync(state);
        try {
          return { server, state, env: await runServerScript(server.script, "start", state) };
        } catch (error) {
          log(`${server.name}: skipped, its server did not start: ${(error as Error).message}`);
          return { server, state, env: undefined };
        }
      }),
    );
    const rows: BenchResult[] = [];
    try {
      const subjects: Subject[] = [memorySubject(), fileSubject(scratch), directorySubject(scratch)];
      for (const { server, env } of started) if (env) subjects.push(server.subject(env));
      for (const subject of subjects) {
        try {
          rows.push(...(await measure(subject, log)));
        } catch (error) {
          log(`${subject.name}: failed: ${(error as Error).stack ?? error}`);
        }
      }
    } finally {
      await Promise.allSettled(
        started.map(({ server, state }) => runServerScript(server.script, "stop", state)),
      );
      mounts.checkNoneLeft();
    }
    return rows;
  },
};

export default benchmark;
