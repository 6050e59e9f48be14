/**
 * userfaultfd cold-touch throughput: a worker thread touches one byte per page
 * of a fresh region while @r3map/native's handler thread resolves each fault a
 * whole chunk at a time. Two paths: every chunk present (resolved natively from
 * memory) and every chunk missing (each miss goes through JavaScript on the main
 * thread first). Baseline: a plain C handler (packages/native/bench/uffd-ref.c,
 * built with gcc in this run) resolving from memory with UFFDIO_COPY, same
 * region and chunk sizes.
 */
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import { ChunkBitmap, MemoryBackend } from "@r3map/core";
import { nativeAddonPath, UffdRegion } from "@r3map/native";
import { type Benchmark, type BenchResult, result } from "../harness.js";

const MiB = 1024 * 1024;
/** Chunk size → region size: 4 KiB chunks fault 16× more often, so their region is smaller to stay bounded. */
const CASES: ReadonlyArray<{ chunkSize: number; size: number; label: string }> = [
  { chunkSize: 4096, size: 64 * MiB, label: "4KiB" },
  { chunkSize: 64 * 1024, size: 256 * MiB, label: "64KiB" },
  { chunkSize: MiB, size: 256 * MiB, label: "1MiB" },
];
const RUNS = 5;

// Runs in the worker: touch one byte per page of the region, report the time.
const TOUCHER = `
const { parentPort, workerData } = require("node:worker_threads");
const view = new Uint8Array(require(workerData.addonPath).uffdAttachView(workerData.id));
const start = performance.now();
let sum = 0;
for (let offset = 0; offset < view.length; offset += 4096) sum += view[offset];
parentPort.postMessage({ ms: performance.now() - start, sum });`;

/** Resolves once the worker has exited: its view (and so the 256 MiB mapping) is gone before the next run starts. */
function touchInWorker(id: number): Promise<{ ms: number; sum: number }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(TOUCHER, { eval: true, workerData: { id, addonPath: nativeAddonPath() } });
    let answer: { ms: number; sum: number } | undefined;
    worker.once("message", (message: { ms: number; sum: number }) => {
      answer = message;
    });
    worker.once("error", reject);
    worker.once("exit", () =>
      answer ? resolve(answer) : reject(new Error("the touching worker exited without an answer")),
    );
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/** One cold touch of a fresh region; `viaJs` leaves every chunk missing so each goes through onMiss. */
async function touchRegion(
  memory: MemoryBackend,
  size: number,
  chunkSize: number,
  viaJs: boolean,
): Promise<number> {
  const presence = new ChunkBitmap(Math.ceil(size / chunkSize));
  if (!viaJs) presence.setAll();
  const region = UffdRegion.create({
    size,
    chunkSize,
    presence,
    cache: { segments: memory.segments },
    onMiss: (chunk) => {
      presence.set(chunk); // the data is already in memory: this measures the JavaScript round trip
    },
  });
  try {
    const { ms, sum } = await touchInWorker(region.id);
    if (sum !== (size / 4096) * 0x5a) throw new Error(`uffd bench read wrong bytes (sum ${sum})`);
    return ms;
  } finally {
    region.close();
  }
}

const benchmark: Benchmark = {
  name: "uffd",
  description:
    "userfaultfd cold touch (worker thread) at 4 KiB / 64 KiB / 1 MiB chunks, native and JS miss paths, vs a C handler",
  skip() {
    const features = UffdRegion.features();
    if (!features.available) return `userfaultfd unavailable (${features.errno}): run as root`;
    try {
      execFileSync("gcc", ["--version"], { stdio: "ignore" });
    } catch {
      return "gcc not found (needed to build the C reference)";
    }
    return undefined;
  },
  async run(context) {
    const source = path.resolve(path.dirname(nativeAddonPath()), "../../bench/uffd-ref.c");
    const reference = path.join(context.scratch, "uffd-ref");
    execFileSync("gcc", ["-O2", "-pthread", "-o", reference, source]);
    const results: BenchResult[] = [];
    for (const { chunkSize, size, label } of CASES) {
      const memory = new MemoryBackend(size);
      (memory.segments[0] as Uint8Array).fill(0x5a);
      // Interleaved, so that noise from other work on this shared machine hits all three alike.
      const cRuns: number[] = [];
      const nativeRuns: number[] = [];
      const jsRuns: number[] = [];
      for (let run = 0; run < RUNS; run++) {
        const output = execFileSync(reference, [String(size), String(chunkSize)], { encoding: "utf8" });
        cRuns.push((JSON.parse(output) as { ms: number }).ms);
        nativeRuns.push(await touchRegion(memory, size, chunkSize, false));
        jsRuns.push(await touchRegion(memory, size, chunkSize, true));
      }
      const mib = size / MiB;
      const cRate = mib / (median(cRuns) / 1000);
      const baseline = `C uffd handler (UFFDIO_COPY from memory), ${label} chunks`;
      context.log(
        `uffd ${label}: C ${cRate.toFixed(0)} MiB/s, native ${(mib / (median(nativeRuns) / 1000)).toFixed(0)}, via JS ${(mib / (median(jsRuns) / 1000)).toFixed(0)}`,
      );
      results.push(
        result(
          `uffd cold touch, ${label} chunks, present (native)`,
          mib / (median(nativeRuns) / 1000),
          "MiB/s",
          baseline,
          cRate,
        ),
        result(
          `uffd cold touch, ${label} chunks, miss via JS onMiss`,
          mib / (median(jsRuns) / 1000),
          "MiB/s",
          baseline,
          cRate,
        ),
      );
    }
    return results;
  },
};

export default benchmark;
