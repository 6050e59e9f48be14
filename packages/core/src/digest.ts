import type { Backend } from "./backend.js";
import { ChunkLayout } from "./chunk-layout.js";
import { R3mapError } from "./errors.js";

/**
 * Per-chunk digests for delta sync: what two copies of a resource exchange to
 * find the chunks that differ, and the plan of what to move. Pure data; the
 * hashing itself is native (`@r3map/native`) or done by a server on its own
 * copy (`Backend.digests`).
 */

/**
 * `xxh3-128`: XXH3 with a 128-bit result, for comparison — fast, not
 * cryptographic (an adversary can make two chunks collide). `blake3`: a
 * cryptographic digest, for an end-to-end check.
 */
export type DigestAlgorithm = "xxh3-128" | "blake3";

export const DIGEST_ALGORITHMS: readonly DigestAlgorithm[] = ["xxh3-128", "blake3"];

/** Bytes one digest takes. */
export function digestBytes(algorithm: DigestAlgorithm): number {
  return algorithm === "xxh3-128" ? 16 : 32;
}

/** Chunks `[first, end)` (indexes at some chunk size). */
export interface ChunkRange {
  first: number;
  end: number;
}

/** "Digests of chunks [first, end) of each range, at chunk size C": what one side asks the other. */
export interface DigestRequest {
  algorithm: DigestAlgorithm;
  chunkSize: number;
  /** In ascending order, not overlapping; the last chunk of the resource may be short. */
  ranges: readonly ChunkRange[];
}

/** Computes the digests a request asks for, concatenated in request order. */
export type DigestSource = (
  request: DigestRequest,
  options?: { signal?: AbortSignal },
) => Promise<Uint8Array>;

/** Chunks a request covers. */
export function requestChunks(request: Pick<DigestRequest, "ranges">): number {
  let total = 0;
  for (const range of request.ranges) total += range.end - range.first;
  return total;
}

/**
 * Checks a request against a resource of `size` bytes: a known algorithm, a
 * positive chunk size, ranges ascending, non-empty and inside the resource.
 * Returns the number of chunks it covers.
 */
export function checkDigestRequest(request: DigestRequest, size: number, maxChunks = Infinity): number {
  if (!DIGEST_ALGORITHMS.includes(request.algorithm)) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `unknown digest algorithm "${request.algorithm}"; use ${DIGEST_ALGORITHMS.join(" or ")}`,
    );
  }
  const layout = new ChunkLayout(size, request.chunkSize);
  let previousEnd = 0;
  let total = 0;
  for (const { first, end } of request.ranges) {
    if (!Number.isSafeInteger(first) || !Number.isSafeInteger(end) || first < previousEnd || end <= first) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `digest ranges must be non-empty, ascending and not overlap; got [${first}, ${end}) after chunk ${previousEnd}`,
      );
    }
    if (end > layout.count) {
      throw new R3mapError(
        "ERR_OUT_OF_RANGE",
        `chunk range [${first}, ${end}) reaches past the ${layout.count} chunks of ${request.chunkSize} bytes in ${size} bytes`,
      );
    }
    previousEnd = end;
    total += end - first;
  }
  if (total > maxChunks) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `a digest request of ${total} chunks is more than the ${maxChunks} allowed at once; split it`,
    );
  }
  return total;
}

/** Byte spans `[offset, length]` of a request's ranges in a resource of `size` bytes (the last chunk may be short). */
export function requestSpans(request: DigestRequest, size: number): Array<[offset: number, length: number]> {
  return request.ranges.map(({ first, end }) => {
    const offset = first * request.chunkSize;
    return [offset, Math.min(size, end * request.chunkSize) - offset];
  });
}

/**
 * The digests of some chunks of a resource, in the order of `ranges`: digest
 * `i` of `bytes` belongs to the i-th chunk of the ranges taken end to end.
 */
export class DigestList {
  readonly digestBytes: number;
  readonly count: number;
  readonly #chunks: number[] | undefined;

  constructor(
    readonly algorithm: DigestAlgorithm,
    readonly chunkSize: number,
    readonly ranges: readonly ChunkRange[],
    readonly bytes: Uint8Array,
  ) {
    this.digestBytes = digestBytes(algorithm);
    this.count = requestChunks({ ranges });
    if (bytes.length !== this.count * this.digestBytes) {
      throw new R3mapError(
        "ERR_PROTOCOL",
        `${this.count} ${algorithm} digests take ${this.count * this.digestBytes} bytes, got ${bytes.length}`,
      );
    }
    // Indexes are only built when a list covers more than one range.
    this.#chunks = ranges.length > 1 ? ranges.flatMap(({ first, end }) => span(first, end)) : undefined;
  }

  /** Every chunk of the resource, [0, count). */
  static whole(layout: ChunkLayout): ChunkRange[] {
    return layout.count === 0 ? [] : [{ first: 0, end: layout.count }];
  }

  /** The chunk index of the i-th digest. */
  chunkAt(i: number): number {
    return this.#chunks ? this.#chunks[i]! : this.ranges[0]!.first + i;
  }

  /** The i-th digest (a view, not a copy). */
  digest(i: number): Uint8Array {
    return this.bytes.subarray(i * this.digestBytes, (i + 1) * this.digestBytes);
  }

  /** The i-th digest as lowercase hex, as xxhsum and b3sum print it. */
  hex(i: number): string {
    return Buffer.from(this.digest(i)).toString("hex");
  }

  /** Whether `other` holds digests of the same chunks, by the same algorithm and chunk size. */
  comparableWith(other: DigestList): boolean {
    return (
      other.algorithm === this.algorithm &&
      other.chunkSize === this.chunkSize &&
      other.ranges.length === this.ranges.length &&
      other.ranges.every((r, i) => r.first === this.ranges[i]!.first && r.end === this.ranges[i]!.end)
    );
  }
}

function span(first: number, end: number): number[] {
  const out = new Array<number>(end - first);
  for (let i = 0; i < out.length; i++) out[i] = first + i;
  return out;
}

/**
 * What to move: runs of chunks (at `chunkSize`) that differ between two
 * copies of a resource of `size` bytes, ascending.
 */
export class TransferPlan {
  constructor(
    readonly size: number,
    readonly chunkSize: number,
    readonly runs: readonly ChunkRange[],
  ) {}

  /** A plan that moves every chunk (a remote that cannot hash and was not compared). */
  static everything(size: number, chunkSize: number): TransferPlan {
    return new TransferPlan(size, chunkSize, DigestList.whole(new ChunkLayout(size, chunkSize)));
  }

  /** Plans of disjoint parts of the same resource, as one. */
  static merge(size: number, chunkSize: number, plans: readonly TransferPlan[]): TransferPlan {
    const chunks: number[] = [];
    for (const plan of plans) {
      if (plan.chunkSize !== chunkSize) {
        throw new R3mapError("ERR_INVALID_ARGUMENT", "plans to merge must use the same chunk size");
      }
      for (const run of plan.runs) for (let chunk = run.first; chunk < run.end; chunk++) chunks.push(chunk);
    }
    return TransferPlan.fromChunks(size, chunkSize, chunks);
  }

  /** The plan moving these chunks (any order, duplicates allowed). */
  static fromChunks(size: number, chunkSize: number, chunks: Iterable<number>): TransferPlan {
    const sorted = [...new Set(chunks)].sort((a, b) => a - b);
    const runs: ChunkRange[] = [];
    for (const chunk of sorted) {
      const last = runs[runs.length - 1];
      if (last && last.end === chunk) last.end++;
      else runs.push({ first: chunk, end: chunk + 1 });
    }
    return new TransferPlan(size, chunkSize, runs);
  }

  get empty(): boolean {
    return this.runs.length === 0;
  }

  /** Chunks to move. */
  get chunks(): number {
    return requestChunks({ ranges: this.runs });
  }

  /** Bytes to move (the last chunk of the resource may be short). */
  get bytes(): number {
    let total = 0;
    for (const [, length] of this.byteRanges()) total += length;
    return total;
  }

  /** Every chunk index to move, ascending. */
  *chunkIndexes(): Generator<number> {
    for (const run of this.runs) for (let chunk = run.first; chunk < run.end; chunk++) yield chunk;
  }

  /**
   * The plan as byte ranges `[offset, length]`, consecutive chunks joined
   * into ranges of at most `maxBytes` (whole chunks; at least one chunk each).
   */
  *byteRanges(maxBytes = Number.MAX_SAFE_INTEGER): Generator<[offset: number, length: number]> {
    const perRange = Math.max(1, Math.floor(maxBytes / this.chunkSize));
    for (const run of this.runs) {
      for (let first = run.first; first < run.end; first += perRange) {
        const end = Math.min(run.end, first + perRange);
        const offset = first * this.chunkSize;
        yield [offset, Math.min(this.size, end * this.chunkSize) - offset];
      }
    }
  }

  /**
   * The plan's runs at a finer chunk size (a divisor of this one), to be
   * compared again: a coarse chunk that differs may differ in only one of
   * its fine chunks.
   */
  refine(fineChunkSize: number): ChunkRange[] {
    if (fineChunkSize > this.chunkSize || this.chunkSize % fineChunkSize !== 0) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `a finer chunk size must divide ${this.chunkSize}, got ${fineChunkSize}`,
      );
    }
    const factor = this.chunkSize / fineChunkSize;
    const count = new ChunkLayout(this.size, fineChunkSize).count;
    return this.runs.map((run) => ({
      first: run.first * factor,
      end: Math.min(count, run.end * factor),
    }));
  }
}

/**
 * The chunks whose digests differ between two lists of the same chunks
 * (`mine` and `theirs`, e.g. the local and the remote copy), as a plan for a
 * resource of `size` bytes.
 */
export function diffDigests(size: number, mine: DigestList, theirs: DigestList): TransferPlan {
  if (!mine.comparableWith(theirs)) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      "digest lists to compare must cover the same chunks with the same algorithm and chunk size",
    );
  }
  const width = mine.digestBytes;
  const a = mine.bytes;
  const b = theirs.bytes;
  const differing: number[] = [];
  for (let i = 0; i < mine.count; i++) {
    const at = i * width;
    for (let k = 0; k < width; k++) {
      if (a[at + k] !== b[at + k]) {
        differing.push(mine.chunkAt(i));
        break;
      }
    }
  }
  return TransferPlan.fromChunks(size, mine.chunkSize, differing);
}

/** A backend that computes digests of its own bytes (a server hashing its copy); see `Backend.digests`. */
export function canDigest(backend: Backend): backend is Backend & { digests: DigestSource } {
  return typeof backend.digests === "function";
}

let registered: ((backend: Backend) => DigestSource) | undefined;

/**
 * Sets how digests of any backend are computed where no faster way is known
 * (`@r3map/native` registers native hashing when it is imported): a server
 * answers digest requests for the backend it serves with it.
 */
export function registerDigester(digester: (backend: Backend) => DigestSource): void {
  registered = digester;
}

/** Digests of `backend` computed here, or undefined when no digester is registered. */
export function digesterFor(backend: Backend): DigestSource | undefined {
  if (canDigest(backend)) return backend.digests;
  return registered?.(backend);
}
