/**
 * The thesis' §4 experiments on our mounts: first-chunk latency, sequential
 * read throughput (uffd slice, direct file, managed file), managed write
 * throughput and managed throughput vs pull workers, at RTTs of about 0, 2,
 * 10 and 25 ms added by a DelayProxy in front of `nbdkit memory` (a separate
 * process, filled with random bytes). Baselines come from the same run:
 * nbdcopy through the same proxy, the mount's own 0 ms figure, and RTT + 0.3 ms
 * for latency (thesis §4.3: userfaultfd ≈ RTT + 0.3 ms).
 *
 * The main thread reads the mounts synchronously (the engines run on their
 * worker threads), so the proxy runs on a thread of its own.
 */
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
/** Direct mounts: the arbitrary stage's unit, matched to the FUSE requests so reads are not amplified. */
const DIRECT_CHUNK = 128 * 1024;
/** First-chunk latency uses 4 KiB chunks, as the thesis did, so only one page crosses the network. */
const LATENCY_CHUNK = 4096;
const LATENCY_SAMPLES = 3;
const PULL_WORKERS = 8;
const SWEEP_WORKERS = [1, 4, 16, 64];
const SWEEP_RTT = 10;
/** Sequential transfers stop after this long; throughput is over what was moved (the whole 256 MiB at low RTT). */
const CAP_MS = 3000;
/** A close that takes longer than this is reported as a failure rather than hanging the run. */
const CLOSE_TIMEOUT_MS = 60_000;

type Kind = "slice" | "direct-file" | "managed-file";
const KIND_LABEL: Record<Kind, string> = {
  slice: "uffd slice (managed)",
  "direct-file": "direct file",
  "managed-file": "managed file",
};

function describe(kind: Kind, remote: string, chunkSize?: number, workers = PULL_WORKERS): MountDescription {
  if (kind === "direct-file") return { remote, chunkSize: chunkSize ?? DIRECT_CHUNK };
  return { remote, chunkSize: chunkSize ?? MANAGED_CHUNK, managed: { pull: { workers } } };
}

function open(kind: Kind, description: MountDescription): Promise<Mount> {
  return kind === "slice" ? mountSlice(description) : mountFile(description);
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

function have(program: string): boolean {
  return (process.env.PATH ?? "/usr/bin").split(":").some((dir) => fs.existsSync(path.join(dir, program)));
}

/** A 256 MiB image of random bytes, in memory (to check reads) and on disk (for nbdcopy). */
function randomImage(scratch: string): { bytes: Buffer; file: string } {
  const bytes = Buffer.allocUnsafe(SIZE);
  for (let offset = 0; offset < SIZE; offset += 16 * MiB) randomFillSync(bytes, offset, 16 * MiB);
  const file = path.join(scratch, "random.img");
  fs.writeFileSync(file, bytes);
  return { bytes, file };
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
    const remote = await NbdkitMemory.start(scratch, SIZE);
    try {
      await remote.fill(image.file);
      log(`nbdkit memory (${SIZE / MiB} MiB of random bytes) on 127.0.0.1:${remote.port}`);
      const readAtZero = new Map<Kind, number>();
      for (const { rtt, oneWayMs } of RTTS) {
        const measured = await measureRtt(oneWayMs);
        log(
          `RTT ${rtt} ms (one-way delay ${oneWayMs} ms): measured median ${measured.medianMs.toFixed(2)} ms, min ${measured.minMs.toFixed(2)}, p99 ${measured.p99Ms.toFixed(2)}`,
        );
        rows.push(
          result(
            `RTT ${rtt}: measured through the delay proxy (ms)`,
            measured.medianMs,
            "ms",
            "nominal RTT",
            rtt,
          ),
        );
        const proxy = await ProxyThread.start(
          import.meta.url,
          { host: "127.0.0.1", port: remote.port },
          oneWayMs,
        );
        try {
          const uri = remote.uri(proxy.port);
          const at = `at ${rtt} ms`;

          const copyRead = mibPerSecond(SIZE, await nbdcopyMs(uri, "null:"));
          log(`nbdcopy nbdkit → null: ${at}: ${copyRead.toFixed(0)} MiB/s`);

          // First-chunk latency: open resolved → first 4 KiB read returned, median of fresh mounts.
          const latencyBaseline = measured.medianMs + 0.3;
          for (const kind of ["slice", "direct-file", "managed-file"] as const) {
            const samples: number[] = [];
            for (let i = 0; i < LATENCY_SAMPLES; i++) {
              samples.push(
                await withMount(kind, describe(kind, uri, LATENCY_CHUNK), (mount) =>
                  kind === "slice"
                    ? firstSliceRead(mount.buffer, 0, image.bytes)
                    : firstFileRead(mount.path!, 0, image.bytes),
                ),
              );
            }
            log(`first-chunk ${KIND_LABEL[kind]} ${at}: ${samples.map((s) => s.toFixed(2)).join(", ")} ms`);
            rows.push(
              result(
                `first-chunk latency ${at}, ${KIND_LABEL[kind]}, 4 KiB chunks (lower is better)`,
                median(samples),
                "ms",
                "RTT + 0.3 ms",
                latencyBaseline,
              ),
            );
          }

          // Sequential read of a cold mount from the main thread.
          for (const kind of ["slice", "direct-file", "managed-file"] as const) {
            const transfer: Transfer = await withMount(kind, describe(kind, uri), (mount) =>
              kind === "slice"
                ? readSliceSequentially(mount.buffer, image.bytes, CAP_MS)
                : readFileSequentially(mount.path!, SIZE, image.bytes, CAP_MS),
            );
            const speed = mibPerSecond(transfer.bytes, transfer.ms);
            log(
              `read ${KIND_LABEL[kind]} ${at}: ${transfer.bytes / MiB} MiB in ${transfer.ms.toFixed(0)} ms`,
            );
            const chunk = kind === "direct-file" ? DIRECT_CHUNK : MANAGED_CHUNK;
            const name = `cold sequential read ${at}, ${KIND_LABEL[kind]}, ${chunk / 1024} KiB chunks`;
            if (rtt === 0) readAtZero.set(kind, speed);
            const zero = readAtZero.get(kind);
            if (kind === "managed-file" && rtt > 0 && zero !== undefined) {
              rows.push(result(name, speed, "MiB/s", "the same at 0 ms", zero));
            } else {
              rows.push(result(name, speed, "MiB/s", `nbdcopy nbdkit → null: ${at}`, copyRead));
            }
          }

          // Managed write: the whole file sequentially, then close (final push included).
          const written = await (async () => {
            const mount = await open("managed-file", describe("managed-file", uri));
            let transfer: Transfer;
            try {
              transfer = writeFileSequentially(mount.path!, image.bytes, CAP_MS);
            } catch (error) {
              await closeBounded(mount);
              throw error;
            }
            const closeStart = performance.now();
            await closeBounded(mount);
            return { ...transfer, ms: transfer.ms + (performance.now() - closeStart) };
          })();
          const copyWrite = mibPerSecond(SIZE, await nbdcopyMs(image.file, uri));
          log(
            `write managed file ${at}: ${written.bytes / MiB} MiB in ${written.ms.toFixed(0)} ms incl. close`,
          );
          rows.push(
            result(
              `managed write + close ${at}, 1 MiB chunks`,
              mibPerSecond(written.bytes, written.ms),
              "MiB/s",
              `nbdcopy image → nbdkit ${at}`,
              copyWrite,
            ),
          );

          if (rtt === SWEEP_RTT) {
            for (const workers of SWEEP_WORKERS) {
              const transfer = await withMount(
                "managed-file",
                describe("managed-file", uri, MANAGED_CHUNK, workers),
                (mount) => readFileSequentially(mount.path!, SIZE, image.bytes, CAP_MS),
              );
              log(
                `read managed file, ${workers} pull workers ${at}: ${transfer.bytes / MiB} MiB in ${transfer.ms.toFixed(0)} ms`,
              );
              rows.push(
                result(
                  `cold sequential read ${at}, managed file, ${workers} pull workers`,
                  mibPerSecond(transfer.bytes, transfer.ms),
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
      }
    } finally {
      await remote.kill();
    }
    return rows;
  },
};

export default benchmark;
