import { randomFillSync } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { type Mount, type MountDescription, mountFile, mountSlice } from "@r3map/mount";
import { measureRtt } from "../delay-proxy.js";
import { type Benchmark, type BenchResult, mibPerSecond, result } from "../harness.js";
import { NbdkitMemory, nbdcopyMs } from "../mount-bench/nbdkit-remote.js";
import { ProxyThread, serveProxyIfWorker } from "../mount-bench/proxy-thread.js";
import {
  firstFileRead,
  firstSliceRead,
  readFileSequentially,
  readSliceSequentially,
  type Transfer,
  writeFileSequentially,
} from "../mount-bench/workloads.js";
import { have } from "../programs.js";
import { ScratchMounts } from "../scratch-mounts.js";

// On the proxy thread this module is loaded only to run the proxy.
await serveProxyIfWorker();

const MiB = 1024 * 1024;
const SIZE = 256 * MiB;
/** Nominal RTT → one-way delay of the proxy (timers add up to ~1 ms; the measured RTT is reported). */
const ALL_RTTS = [
  { rtt: 0, oneWayMs: 0 },
  { rtt: 2, oneWayMs: 1 },
  { rtt: 10, oneWayMs: 5 },
  { rtt: 25, oneWayMs: 12.5 },
];
/** `R3MAP_MOUNT_BENCH_RTTS=0,10` runs a subset (while working on one figure). */
const RTTS = ALL_RTTS.filter(({ rtt }) =>
  (process.env.R3MAP_MOUNT_BENCH_RTTS?.split(",").map(Number) ?? [rtt]).includes(rtt),
);
/** Managed mounts fetch, cache and push 1 MiB chunks (the package default; one NBD request each). */
const MANAGED_CHUNK = MiB;
/** Direct mounts: the arbitrary stage's unit; the kernel sends FUSE reads of up to 1 MiB (max_pages 256), so 1 MiB too. */
const DIRECT_CHUNK = MiB;
/** First-chunk latency uses 4 KiB chunks, as the thesis did, so only one page crosses the network. */
const LATENCY_CHUNK = 4096;
const LATENCY_SAMPLES = 5;
/** Sequential transfers run this often at each point; the best counts (the machine is shared and noisy). */
const RUNS = 3;
const PULL_WORKERS = 32; // the mount default
const SWEEP_WORKERS = [1, 4, 16, 64];
const SWEEP_RTT = 10;
/** Sequential transfers stop after this long; throughput is over what was moved (the whole 256 MiB at low RTT). */
const CAP_MS = 3000;
/** A close that takes longer than this is reported as a failure rather than hanging the run. */
const CLOSE_TIMEOUT_MS = 60_000;

type Kind = "slice" | "direct-file" | "managed-file";
const KINDS = ["slice", "direct-file", "managed-file"] as const;
const KIND_LABEL: Record<Kind, string> = {
  slice: "uffd slice (managed)",
  "direct-file": "direct file",
  "managed-file": "managed file",
};

function describe(kind: Kind, remote: string, chunkSize?: number, workers = PULL_WORKERS): MountDescription {
  if (kind === "direct-file") return { remote, chunkSize: chunkSize ?? DIRECT_CHUNK };
  return { remote, chunkSize: chunkSize ?? MANAGED_CHUNK, managed: { pull: { workers } } };
}

/** The run's file mounts (set by `run`). */
let mounts: ScratchMounts | undefined;

function open(kind: Kind, description: MountDescription): Promise<Mount> {
  if (kind === "slice") return mountSlice(description);
  return mounts ? mounts.mountFile(description) : mountFile(description);
}

async function closeBounded(mount: Mount): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`a mount did not close within ${CLOSE_TIMEOUT_MS} ms`)),
      CLOSE_TIMEOUT_MS,
    );
  });
  try {
    await Promise.race([mount.close(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Opens a mount, runs `use` on it, and always closes it. */
async function withMount<T>(
  kind: Kind,
  description: MountDescription,
  use: (mount: Mount) => T | Promise<T>,
): Promise<T> {
  const mount = await open(kind, description);
  try {
    return await use(mount);
  } finally {
    await closeBounded(mount);
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function best(values: number[]): number {
  return Math.max(...values);
}

async function repeat<T>(times: number, operation: () => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < times; i++) out.push(await operation());
  return out;
}

function speed(transfer: Transfer): number {
  return mibPerSecond(transfer.bytes, transfer.ms);
}

/** A 256 MiB image of random bytes, in memory (to check reads) and on disk (for nbdcopy). */
function randomImage(scratch: string): { bytes: Buffer; file: string } {
  const bytes = Buffer.allocUnsafe(SIZE);
  for (let offset = 0; offset < SIZE; offset += 16 * MiB) randomFillSync(bytes, offset, 16 * MiB);
  const file = path.join(scratch, "random.img");
  fs.writeFileSync(file, bytes);
  return { bytes, file };
}

/**
 * Freshly opened mounts (open resolved → read returned), in ms: the first
 * 4 KiB read at offset 0 (the thesis's first chunk; a managed mount's pull
 * starts there, before the device exists, so it is often local already), then
 * one in the middle of the resource, which no pull has reached: a demand miss.
 */
async function firstChunkMs(
  kind: Kind,
  uri: string,
  source: Buffer,
): Promise<{ first: number[]; miss: number[] }> {
  const read = (mount: Mount, offset: number) =>
    kind === "slice"
      ? firstSliceRead(mount.buffer, offset, source)
      : firstFileRead(mount.path!, offset, source);
  const samples = await repeat(LATENCY_SAMPLES, () =>
    withMount(kind, describe(kind, uri, LATENCY_CHUNK), (mount) => [read(mount, 0), read(mount, SIZE / 2)]),
  );
  return { first: samples.map(([first]) => first!), miss: samples.map(([, miss]) => miss!) };
}

/** A cold mount read sequentially from the main thread (capped at CAP_MS). */
function coldRead(kind: Kind, description: MountDescription, source: Buffer): Promise<Transfer> {
  return withMount(kind, description, (mount) =>
    kind === "slice"
      ? readSliceSequentially(mount.buffer, source, CAP_MS)
      : readFileSequentially(mount.path!, SIZE, source, CAP_MS),
  );
}

/** A cold managed file written sequentially (capped), then closed: the final push is part of the time. */
async function managedWrite(uri: string, source: Buffer): Promise<Transfer & { writeMs: number }> {
  const mount = await open("managed-file", describe("managed-file", uri));
  let transfer: Transfer;
  try {
    transfer = writeFileSequentially(mount.path!, source, CAP_MS);
  } catch (error) {
    await closeBounded(mount);
    throw error;
  }
  const closeStart = performance.now();
  await closeBounded(mount);
  return { bytes: transfer.bytes, writeMs: transfer.ms, ms: transfer.ms + (performance.now() - closeStart) };
}

/**
 * Where the 0 ms managed read goes, measured without the proxy: the cold read
 * against nbdcopy straight from nbdkit (the issue's target as worded), the
 * background pull alone (an open with `pull.first`), and the read of a fully
 * local mount (the FUSE path alone) against reading the image file.
 */
async function zeroRttDiagnostics(
  remote: NbdkitMemory,
  image: { bytes: Buffer; file: string },
  log: (m: string) => void,
): Promise<BenchResult[]> {
  const uri = remote.uri();
  const copy = best(await repeat(RUNS, async () => mibPerSecond(SIZE, await nbdcopyMs(uri, "null:"))));
  const cold = best(
    (await repeat(RUNS, () => coldRead("managed-file", describe("managed-file", uri), image.bytes))).map(
      speed,
    ),
  );
  let pullMs = 0;
  const { hot, rewrite } = await (async () => {
    const start = performance.now();
    const description: MountDescription = {
      remote: uri,
      chunkSize: MANAGED_CHUNK,
      managed: { pull: { workers: PULL_WORKERS, first: true }, push: { intervalMs: null } },
    };
    return withMount("managed-file", description, (mount) => {
      pullMs = performance.now() - start;
      const hot = readFileSequentially(mount.path!, SIZE, image.bytes, CAP_MS);
      // Every chunk is present: writes are stored natively (pushed at close, not timed here).
      return { hot, rewrite: writeFileSequentially(mount.path!, image.bytes, CAP_MS) };
    });
  })();
  const local = readFileSequentially(image.file, SIZE, image.bytes, CAP_MS);
  const localWrite = writeFileSequentially(image.file, image.bytes, CAP_MS);
  log(
    `no proxy: nbdcopy ${copy.toFixed(0)}, managed cold ${cold.toFixed(0)}, pull-first open ${pullMs.toFixed(0)} ms, hot ${speed(hot).toFixed(0)} MiB/s, rewrite ${speed(rewrite).toFixed(0)} MiB/s`,
  );
  return [
    result(
      "no proxy: cold sequential read, managed file, 1024 KiB chunks",
      cold,
      "MiB/s",
      "nbdcopy nbdkit → null: (no proxy)",
      copy,
    ),
    result(
      "no proxy: background pull alone (open with pull.first)",
      mibPerSecond(SIZE, pullMs),
      "MiB/s",
      "nbdcopy nbdkit → null: (no proxy)",
      copy,
    ),
    result(
      "no proxy: read of a fully pulled managed file (FUSE path)",
      speed(hot),
      "MiB/s",
      "read of the image file (page cache)",
      speed(local),
    ),
    result(
      "no proxy: rewrite of a fully pulled managed file (native writes)",
      speed(rewrite),
      "MiB/s",
      "write of the image file (page cache)",
      speed(localWrite),
    ),
  ];
}

/** Every measurement at one RTT, through a proxy thread. */
async function atRtt(
  remote: NbdkitMemory,
  image: { bytes: Buffer; file: string },
  { rtt, oneWayMs }: { rtt: number; oneWayMs: number },
  readAtZero: Map<Kind, number>,
  log: (m: string) => void,
): Promise<BenchResult[]> {
  const rows: BenchResult[] = [];
  const at = `at ${rtt} ms`;
  const measured = await measureRtt(oneWayMs);
  log(
    `RTT ${rtt} ms (one-way delay ${oneWayMs} ms): measured median ${measured.medianMs.toFixed(2)} ms, min ${measured.minMs.toFixed(2)}, p99 ${measured.p99Ms.toFixed(2)}`,
  );
  rows.push(
    result(`RTT ${rtt}: measured through the delay proxy`, measured.medianMs, "ms", "nominal RTT", rtt),
  );
  const proxy = await ProxyThread.start(import.meta.url, { host: "127.0.0.1", port: remote.port }, oneWayMs);
  try {
    const uri = remote.uri(proxy.port);
    const copyRead = best(await repeat(RUNS, async () => mibPerSecond(SIZE, await nbdcopyMs(uri, "null:"))));
    log(`nbdcopy nbdkit → null: ${at}: ${copyRead.toFixed(0)} MiB/s`);

    for (const kind of KINDS) {
      const { first, miss } = await firstChunkMs(kind, uri, image.bytes);
      const list = (samples: number[]) => samples.map((sample) => sample.toFixed(2)).join(", ");
      log(
        `first-chunk ${KIND_LABEL[kind]} ${at}: ${list(first)} ms; then a miss mid-resource: ${list(miss)} ms`,
      );
      for (const [what, samples] of [
        ["first-chunk latency", first],
        ["demand-miss latency (mid-resource, just opened)", miss],
      ] as const) {
        rows.push(
          result(
            `${what} ${at}, ${KIND_LABEL[kind]}, 4 KiB chunks (lower is better)`,
            median(samples),
            "ms",
            "RTT + 0.3 ms",
            measured.medianMs + 0.3,
          ),
        );
      }
    }

    for (const kind of KINDS) {
      const transfers = await repeat(RUNS, () => coldRead(kind, describe(kind, uri), image.bytes));
      const value = best(transfers.map(speed));
      log(
        `read ${KIND_LABEL[kind]} ${at}: ${transfers.map((t) => `${t.bytes / MiB} MiB in ${t.ms.toFixed(0)} ms`).join("; ")}`,
      );
      const name = `cold sequential read ${at}, ${KIND_LABEL[kind]}, 1024 KiB chunks`;
      if (rtt === 0) readAtZero.set(kind, value);
      const zero = readAtZero.get(kind);
      rows.push(
        kind === "managed-file" && rtt > 0 && zero !== undefined
          ? result(name, value, "MiB/s", "the same at 0 ms", zero)
          : result(name, value, "MiB/s", `nbdcopy nbdkit → null: ${at}`, copyRead),
      );
    }

    const writes = await repeat(RUNS, () => managedWrite(uri, image.bytes));
    log(
      `write managed file ${at}: ${writes.map((w) => `${w.bytes / MiB} MiB: write ${w.writeMs.toFixed(0)} ms + close ${(w.ms - w.writeMs).toFixed(0)} ms`).join("; ")}`,
    );
    const copyWrite = best(
      await repeat(RUNS, async () => mibPerSecond(SIZE, await nbdcopyMs(image.file, uri))),
    );
    rows.push(
      result(
        `managed write + close ${at}, 1024 KiB chunks`,
        best(writes.map(speed)),
        "MiB/s",
        `nbdcopy image → nbdkit ${at}`,
        copyWrite,
      ),
    );

    if (rtt === SWEEP_RTT) {
      for (const workers of SWEEP_WORKERS) {
        const transfers = await repeat(RUNS, () =>
          coldRead("managed-file", describe("managed-file", uri, MANAGED_CHUNK, workers), image.bytes),
        );
        log(
          `read managed file, ${workers} pull workers ${at}: ${transfers.map((t) => `${t.bytes / MiB} MiB in ${t.ms.toFixed(0)} ms`).join("; ")}`,
        );
        rows.push(
          result(
            `cold sequential read ${at}, managed file, ${workers} pull workers`,
            best(transfers.map(speed)),
            "MiB/s",
            `nbdcopy nbdkit → null: ${at}`,
            copyRead,
          ),
        );
      }
    }
  } finally {
    await proxy.close();
  }
  return rows;
}

const benchmark: Benchmark = {
  name: "mount",
  description:
    "mounts over nbdkit memory behind a delay proxy (RTT 0/2/10/25 ms): first-chunk latency, sequential read, managed write, pull workers",
  skip() {
    if (process.getuid?.() !== 0) return "needs root (FUSE mounts, userfaultfd)";
    if (!fs.existsSync("/dev/fuse")) return "no /dev/fuse";
    const missing = ["nbdkit", "nbdcopy"].filter((program) => !have(program));
    return missing.length > 0
      ? `missing ${missing.join(", ")} (apt-get install nbdkit libnbd-bin)`
      : undefined;
  },
  async run({ scratch, log }) {
    const rows: BenchResult[] = [];
    const image = randomImage(scratch);
    mounts = new ScratchMounts(scratch);
    const remote = await NbdkitMemory.start(scratch, SIZE);
    try {
      await remote.fill(image.file);
      log(`nbdkit memory (${SIZE / MiB} MiB of random bytes) on 127.0.0.1:${remote.port}`);
      const readAtZero = new Map<Kind, number>();
      for (const point of RTTS) {
        rows.push(...(await atRtt(remote, image, point, readAtZero, log)));
        if (point.rtt === 0) rows.push(...(await zeroRttDiagnostics(remote, image, log)));
      }
    } finally {
      await remote.kill();
      mounts.checkNoneLeft();
    }
    return rows;
  },
};

export default benchmark;
