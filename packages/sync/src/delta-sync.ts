import {
  ChunkLayout,
  type ChunkRange,
  DigestList,
  diffDigests,
  formatBytes,
  R3mapError,
  type TransferPlan,
} from "@r3map/core";
import {
  type CompareCost,
  type CompareOptions,
  compareRange,
  DEFAULT_CHUNK_SIZE,
  defaultCoarseChunkSize,
} from "./compare.js";
import type { SyncSide } from "./resource.js";
import { copyPlan, type TransferOptions } from "./transfer.js";

export interface DeltaSyncOptions extends CompareOptions, TransferOptions {
  /**
   * Compared and moved this many bytes at a time (default 1 GiB, rounded to
   * whole coarse chunks): memory stays bounded and progress moves on a large
   * device; an interrupted sync has finished whole windows.
   */
  windowBytes?: number;
  /**
   * At the end, compare BLAKE3 digests of both copies (per coarse chunk): a
   * mismatch fails the sync with ERR_INTEGRITY, naming where.
   */
  check?: boolean;
  onProgress?: (progress: SyncProgress) => void;
}

export interface SyncProgress {
  /** `compare`: digests of `done` bytes of `total` compared; `transfer`: bytes moved so far; `check`: verifying. */
  phase: "compare" | "transfer" | "check";
  done: number;
  total: number;
}

/** What a sync did. */
export interface SyncReport {
  size: number;
  chunkSize: number;
  /** Both sides computed their digests where their bytes are (nothing read just to compare). */
  bothHash: boolean;
  chunksMoved: number;
  bytesMoved: number;
  /** Digest bytes received from the other side. */
  digestBytes: number;
  /** Bytes read from a side that cannot hash, to compare them. */
  bytesReadToCompare: number;
  rounds: number;
  /** With `check`: BLAKE3 per chunk of `chunkSize` bytes, all equal (a mismatch throws). */
  check?: { algorithm: "blake3"; chunkSize: number; chunks: number };
  ms: number;
}

/** The error a failed check throws: which chunks differ. */
export class SyncCheckError extends R3mapError {
  constructor(
    readonly mismatched: readonly ChunkRange[],
    readonly chunkSize: number,
    readonly report: SyncReport,
  ) {
    const chunks = mismatched.reduce((total, run) => total + run.end - run.first, 0);
    const first = mismatched[0]!;
    super(
      "ERR_INTEGRITY",
      `the BLAKE3 check found ${chunks} chunk(s) of ${formatBytes(chunkSize)} that still differ after the sync, the first at byte ${first.first * chunkSize}: the remote did not store what was sent, or either copy changed meanwhile; run the sync again`,
    );
  }
}

/**
 * Makes `to` equal `from`: compares per-chunk digests of both (computed where
 * each copy is), coarse then finer, and copies only the chunks that differ,
 * then syncs `to`. Both must be the same size.
 *
 * ```js
 * const local = openLocalPath("disk.img");
 * const remote = remoteSide(await openBackend("r3map+h2c://10.0.0.2:1337"));
 * const report = await syncDelta(local, remote, { check: true }); // push
 * ```
 */
export async function syncDelta(
  from: SyncSide,
  to: SyncSide,
  options: DeltaSyncOptions = {},
): Promise<SyncReport> {
  const started = performance.now();
  const size = from.backend.size;
  checkSameSize(from, to);
  if (to.backend.readOnly) {
    throw new R3mapError("ERR_READ_ONLY", `${to.name} is read-only: nothing can be synced to it`);
  }
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const coarse = options.coarseChunkSize ?? defaultCoarseChunkSize(size, chunkSize);
  if (coarse % chunkSize !== 0) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `the coarse chunk size (${coarse}) must be a multiple of the chunk size (${chunkSize})`,
    );
  }
  const window = Math.max(coarse, Math.floor((options.windowBytes ?? 1024 ** 3) / coarse) * coarse);
  const cost: CompareCost = { digestBytes: 0, bytesReadToCompare: 0, rounds: 0 };
  const report: SyncReport = {
    size,
    chunkSize,
    bothHash: from.hashesWhereItIs && to.hashesWhereItIs,
    chunksMoved: 0,
    bytesMoved: 0,
    digestBytes: 0,
    bytesReadToCompare: 0,
    rounds: 0,
    ms: 0,
  };
  const compareOptions = {
    chunkSize,
    coarseChunkSize: coarse,
    cost,
    ...(options.signal ? { signal: options.signal } : {}),
  };
  for (let offset = 0; offset < size; offset += window) {
    const length = Math.min(window, size - offset);
    const plan = await compareRange(from, to, size, offset, length, compareOptions);
    options.onProgress?.({ phase: "compare", done: offset + length, total: size });
    report.chunksMoved += plan.chunks;
    await copyPlan(from.backend, to.backend, plan, {
      ...options,
      onMoved: (bytes) => {
        report.bytesMoved += bytes;
        options.onMoved?.(bytes);
        options.onProgress?.({ phase: "transfer", done: report.bytesMoved, total: size });
      },
    });
  }
  await to.backend.sync();
  Object.assign(report, cost);
  if (options.check) {
    options.onProgress?.({ phase: "check", done: 0, total: size });
    const mismatched = await checkCopies(from, to, coarse, options.signal);
    report.check = { algorithm: "blake3", chunkSize: coarse, chunks: new ChunkLayout(size, coarse).count };
    options.onProgress?.({ phase: "check", done: size, total: size });
    report.ms = performance.now() - started;
    if (mismatched.length > 0) throw new SyncCheckError(mismatched, coarse, report);
  }
  report.ms = performance.now() - started;
  return report;
}

/** Chunks (at `chunkSize`) whose BLAKE3 digests differ between the two copies. */
export async function checkCopies(
  a: SyncSide,
  b: SyncSide,
  chunkSize: number,
  signal?: AbortSignal,
): Promise<ChunkRange[]> {
  checkSameSize(a, b);
  const size = a.backend.size;
  const ranges = DigestList.whole(new ChunkLayout(size, chunkSize));
  const request = { algorithm: "blake3" as const, chunkSize, ranges };
  const call = signal ? { signal } : {};
  const [mine, theirs] = await Promise.all([a.digests(request, call), b.digests(request, call)]);
  const plan: TransferPlan = diffDigests(
    size,
    new DigestList("blake3", chunkSize, ranges, mine),
    new DigestList("blake3", chunkSize, ranges, theirs),
  );
  return [...plan.runs];
}

function checkSameSize(a: SyncSide, b: SyncSide): void {
  if (a.backend.size !== b.backend.size) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `the sizes differ: ${a.name} has ${a.backend.size} bytes, ${b.name} ${b.backend.size}; resize one (r3map sync pull --resize resizes a local file) or pick matching copies`,
    );
  }
}
