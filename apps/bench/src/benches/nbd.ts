import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import type * as net from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { MemoryBackend } from "@r3map/core";
import { keepBackendFromChildren } from "@r3map/native";
import { connectNbd, NbdServer } from "@r3map/nbd";
import { type Benchmark, type BenchResult, mibPerSecond, result } from "../harness.js";
import { freePort, have, waitForPort } from "../programs.js";

const run = promisify(execFile);
const MiB = 1024 * 1024;
const size = 256 * MiB;

async function startNbdkit(port: number): Promise<ChildProcess> {
  const child = spawn(
    "nbdkit",
    ["-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", String(port), "memory", `size=${size}`],
    {
      stdio: "ignore",
    },
  );
  await waitForPort(port, child, 10_000);
  return child;
}

/** Best (lowest) wall time of `runs` runs of `operation`, in ms; the machine is shared, so the minimum is the least noisy. */
async function bestMs(runs: number, operation: () => Promise<unknown>): Promise<number> {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await operation();
    best = Math.min(best, performance.now() - start);
  }
  return best;
}

/** Runs fio's nbd engine against `uri`; returns bandwidth (MiB/s) or IOPS of the read or write side. */
async function fio(
  uri: string,
  rw: string,
  bs: string,
  depth: number,
  extra: string[] = [],
): Promise<{ mibs: number; iops: number }> {
  const { stdout } = await run("fio", [
    "--name=bench",
    "--ioengine=nbd",
    `--uri=${uri}`,
    `--rw=${rw}`,
    `--bs=${bs}`,
    `--iodepth=${depth}`,
    `--size=${size}`,
    "--output-format=json",
    ...extra,
  ]);
  const job = (
    JSON.parse(stdout.slice(stdout.indexOf("{"))) as {
      jobs: Array<Record<string, { bw_bytes: number; iops: number }>>;
    }
  ).jobs[0]!;
  const side = rw.includes("write") ? job.write! : job.read!;
  return { mibs: side.bw_bytes / MiB, iops: side.iops };
}

const benchmark: Benchmark = {
  name: "nbd",
  description:
    "our NBD server vs nbdkit memory (nbdcopy, fio nbd engine), and our NBD client vs nbdcopy reading nbdkit",
  skip() {
    const missing = ["nbdkit", "nbdcopy", "fio"].filter((program) => !have(program));
    return missing.length > 0
      ? `missing ${missing.join(", ")} (apt-get install nbdkit libnbd-bin fio)`
      : undefined;
  },
  async run({ scratch, log }) {
    const rows: BenchResult[] = [];
    const source = join(scratch, "random.bin");
    await run("dd", ["if=/dev/urandom", `of=${source}`, "bs=1M", `count=${size / MiB}`, "status=none"]);

    // Same bytes in both servers: ours over a MemoryBackend, nbdkit memory filled through nbdcopy.
    const memory = MemoryBackend.from(readFileSync(source));
    keepBackendFromChildren(memory); // as `r3map serve` does: this process spawns every nbdcopy and fio
    const server = new NbdServer({ exports: [{ name: "mem", backend: memory }] });
    const ours = `nbd://127.0.0.1:${((await server.listen({ port: 0 })) as net.AddressInfo).port}/mem`;
    const kitPort = await freePort();
    const nbdkit = await startNbdkit(kitPort);
    const theirs = `nbd://127.0.0.1:${kitPort}/`;
    try {
      await run("nbdcopy", [source, theirs]);

      log("nbdcopy reads");
      const copyRead = async (uri: string) => bestMs(8, () => run("nbdcopy", [uri, "null:"]));
      const kitRead = await copyRead(theirs);
      const ourRead = await copyRead(ours);
      rows.push(
        result(
          "nbd server: nbdcopy read → null:",
          mibPerSecond(size, ourRead),
          "MiB/s",
          "nbdkit memory",
          mibPerSecond(size, kitRead),
        ),
      );

      log("nbdcopy writes");
      const copyWrite = async (uri: string) => bestMs(8, () => run("nbdcopy", [source, uri]));
      const kitWrite = await copyWrite(theirs);
      const ourWrite = await copyWrite(ours);
      rows.push(
        result(
          "nbd server: nbdcopy write",
          mibPerSecond(size, ourWrite),
          "MiB/s",
          "nbdkit memory",
          mibPerSecond(size, kitWrite),
        ),
      );

      log("fio sequential 1 MiB reads");
      // Steady state, as for the random runs: a single 256 MiB pass lasts ~0.1 s and mostly measures warm-up.
      const steady = ["--time_based", "--runtime=3"];
      const seq = async (uri: string) => (await fio(uri, "read", "1M", 16, steady)).mibs;
      const kitSeq = await seq(theirs);
      const ourSeq = await seq(ours);
      rows.push(result("nbd server: fio seq read 1M qd16", ourSeq, "MiB/s", "nbdkit memory", kitSeq));

      log("fio random 4 KiB reads and writes");
      const timed = ["--time_based", "--runtime=3", "--randrepeat=0"];
      const kitRand = (await fio(theirs, "randread", "4k", 32, timed)).iops;
      const ourRand = (await fio(ours, "randread", "4k", 32, timed)).iops;
      rows.push(result("nbd server: fio rand read 4k qd32", ourRand, "IOPS", "nbdkit memory", kitRand));
      const kitRandW = (await fio(theirs, "randwrite", "4k", 32, timed)).iops;
      const ourRandW = (await fio(ours, "randwrite", "4k", 32, timed)).iops;
      rows.push(result("nbd server: fio rand write 4k qd32", ourRandW, "IOPS", "nbdkit memory", kitRandW));

      log("our client reading nbdkit");
      const client = await connectNbd(`${theirs}?connections=4`);
      const target = new Uint8Array(size);
      const piece = 4 * MiB;
      const clientMs = await bestMs(5, async () => {
        let next = 0;
        const worker = async () => {
          for (let offset = next; offset < size; offset = next) {
            next += piece;
            await client.readAt(target.subarray(offset, offset + piece), offset);
          }
        };
        await Promise.all(Array.from({ length: 8 }, worker));
      });
      await client.close();
      const copyMs = await copyRead(theirs);
      rows.push(
        result(
          "nbd client: read nbdkit export (4 conns)",
          mibPerSecond(size, clientMs),
          "MiB/s",
          "nbdcopy → null:",
          mibPerSecond(size, copyMs),
        ),
      );
    } finally {
      nbdkit.kill("SIGTERM");
      await server.close();
    }
    return rows;
  },
};

export default benchmark;
