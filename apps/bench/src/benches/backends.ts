/**
 * The thesis' §4.13 "backends at 0 ms" on our managed file mounts: cold
 * sequential read throughput and first-chunk latency with the remote in
 * memory, a file, a chunk directory, Redis, S3 (Ceph radosgw) and Cassandra 5.
 * Every figure sits next to the same bytes read with the store's own client
 * directly, in the same run (memcpy, fs.readSync, ioredis GET, S3 GetObject,
 * Cassandra SELECT), and the original r3map's figures are logged beside them.
 * One file per store in ../backends-bench/, the measurement in measure.ts.
 *
 * The stores run on 127.0.0.1, started by scripts/servers (a backend whose
 * server cannot start is skipped with the reason). The main thread reads the
 * mounts synchronously; the engines run on their worker threads.
 */
import * as fs from "node:fs";
import { startServer, type TestServer } from "../../../../scripts/servers/harness.js";
import { cassandraSubject } from "../backends-bench/cassandra.js";
import { directorySubject } from "../backends-bench/directory.js";
import { fileSubject } from "../backends-bench/file.js";
import { measure } from "../backends-bench/measure.js";
import { memorySubject } from "../backends-bench/memory.js";
import { redisSubject } from "../backends-bench/redis.js";
import { s3Subject } from "../backends-bench/s3.js";
import type { ServerEnv, Subject } from "../backends-bench/subject.js";
import type { Benchmark, BenchResult } from "../harness.js";
import { ScratchMounts } from "../scratch-mounts.js";

const SERVER_START_MS = 120_000;

const SERVERS: ReadonlyArray<{ name: string; script: string; subject: (env: ServerEnv) => Subject }> = [
  { name: "redis", script: "redis", subject: redisSubject },
  { name: "s3", script: "radosgw", subject: s3Subject },
  { name: "cassandra", script: "cassandra", subject: cassandraSubject },
];

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
    const mounts = new ScratchMounts(scratch);
    // The servers boot in parallel (radosgw ≈ 12 s, Cassandra ≈ 8 s) while nothing is measured.
    const started = await Promise.all(
      SERVERS.map(async (server) => {
        try {
          return { server, running: await startServer(server.script, { timeoutMs: SERVER_START_MS }) };
        } catch (error) {
          log(
            `${server.name}: skipped, its server did not start: ${(error as Error).message.split("\n")[0]}`,
          );
          return { server, running: undefined as TestServer | undefined };
        }
      }),
    );
    const rows: BenchResult[] = [];
    try {
      const subjects: Subject[] = [memorySubject(), fileSubject(scratch), directorySubject(scratch)];
      for (const { server, running } of started) if (running) subjects.push(server.subject(running.env));
      for (const subject of subjects) {
        try {
          rows.push(...(await measure(mounts, subject, log)));
        } catch (error) {
          log(`${subject.name}: failed: ${(error as Error).stack ?? error}`);
        }
      }
    } finally {
      await Promise.allSettled(started.map(({ running }) => running?.stop()));
      mounts.checkNoneLeft();
    }
    return rows;
  },
};

export default benchmark;
