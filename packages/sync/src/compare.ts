import {
  ChunkLayout,
  type ChunkRange,
  DigestList,
  type DigestRequest,
  diffDigests,
  TransferPlan,
} from "@r3map/core";
import type { SyncSide } from "./resource.js";

/** How two copies are compared. */
export interface CompareOptions {
  /** The unit of transfer: chunks that differ are moved whole (default 4 KiB, a page). */
  chunkSize?: number;
  /**
   * The first, coarsest comparison's chunk size (default: see
   * `defaultCoarseChunkSize`). Chunks that differ there are compared again 16
   * times finer, down to `chunkSize`: identical copies exchange a few
   * thousand digests, and a change costs a few extra digests instead of a
   * whole coarse chunk of data.
   */
  coarseChunkSize?: number;
  signal?: AbortSignal;
}

/** What a comparison cost. */
export interface CompareCost {
  /** Bytes of digests the other side sent (or that were computed from bytes read here). */
  digestBytes: number;
  /** Bytes read from a side that cannot hash, to hash them here. */
  bytesReadToCompare: number;
  /** Comparison rounds (one per level of chunk size). */
  rounds: number;
}

export const DEFAULT_CHUNK_SIZE = 4096;
const REFINE_FACTOR = 16;
/** About this many coarse chunks per resource (see `defaultCoarseChunkSize`). */
const COARSE_CHUNKS = 16 * 1024;

/**
 * The first comparison's chunk size for `size` bytes: a power of two giving
 * about 16 Ki coarse chunks (256 KiB of XXH3-128 digests for identical copies),
 * at least 16 times `chunkSize` and at most 64 MiB. Coarser first rounds
 * exchange fewer digests when little changed, but every round hashes again
 * what differed: with changes spread over a large part of the resource (1 %
 * of random pages touches nearly every 1 MiB chunk), a 1 MiB first round made
 * each side hash 2.1 GiB for 1 GiB instead of 1.2.
 */
export function defaultCoarseChunkSize(size: number, chunkSize: number): number {
  let coarse = chunkSize * REFINE_FACTOR;
  while (coarse * COARSE_CHUNKS < size && coarse < 64 * 1024 * 1024) coarse *= 2;
  return coarse;
}

/**
 * The chunk sizes to compare at, coarse to fine: each 16 times finer than the
 * one before (the last may be less), ending at `chunkSize`. A side that cannot
 * hash is compared once, at `chunkSize`: every round would read its bytes again.
 */
export function comparisonLevels(chunkSize: number, coarseChunkSize: number, bothHash: boolean): number[] {
  if (!bothHash || coarseChunkSize <= chunkSize) return [chunkSize];
  const levels = [chunkSize];
  let size = chunkSize;
  while (size * REFINE_FACTOR < coarseChunkSize) {
    size *= REFINE_FACTOR;
    levels.unshift(size);
  }
  levels.unshift(coarseChunkSize);
  return levels;
}

/**
 * Compares `[offset, offset + length)` of two copies of a resource of `size`
 * bytes — both must be this size — and returns the chunks (at the finest
 * level) whose digests differ. Digests of both sides are computed at once.
 * `offset` must be a multiple of the coarsest chunk size.
 */
export async function compareRange(
  mine: SyncSide,
  theirs: SyncSide,
  size: number,
  offset: number,
  length: number,
  options: CompareOptions & { cost?: CompareCost } = {},
): Promise<TransferPlan> {
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const levels = comparisonLevels(
    chunkSize,
    options.coarseChunkSize ?? defaultCoarseChunkSize(size, chunkSize),
    mine.hashesWhereItIs && theirs.hashesWhereItIs,
  );
  const first = levels[0]!;
  const layout = new ChunkLayout(size, first);
  let ranges: ChunkRange[] =
    length === 0
      ? []
      : [
          {
            first: Math.floor(offset / first),
            end: Math.min(layout.count, Math.ceil((offset + length) / first)),
          },
        ];
  let plan = new TransferPlan(size, first, []);
  for (const [level, levelChunkSize] of levels.entries()) {
    if (level > 0) ranges = plan.refine(levelChunkSize);
    if (ranges.length === 0) return new TransferPlan(size, chunkSize, []);
    const request: DigestRequest = { algorithm: "xxh3-128", chunkSize: levelChunkSize, ranges };
    const signal = options.signal ? { signal: options.signal } : {};
    const [a, b] = await Promise.all([mine.digests(request, signal), theirs.digests(request, signal)]);
    if (options.cost) {
      options.cost.rounds++;
      // What crossed the wire: the other side's digests, or the bytes read here to hash them.
      if (theirs.hashesWhereItIs) options.cost.digestBytes += b.length;
      for (const side of [mine, theirs])
        if (!side.hashesWhereItIs) options.cost.bytesReadToCompare += requestBytes(request, size);
    }
    plan = diffDigests(
      size,
      new DigestList(request.algorithm, levelChunkSize, ranges, a),
      new DigestList(request.algorithm, levelChunkSize, ranges, b),
    );
  }
  return plan;
}

/** Bytes of the resource a request covers. */
function requestBytes(request: DigestRequest, size: number): number {
  let total = 0;
  for (const { first, end } of request.ranges)
    total += Math.min(size, end * request.chunkSize) - first * request.chunkSize;
  return total;
}
