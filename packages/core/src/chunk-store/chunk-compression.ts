import { deflateRawSync, inflateRawSync } from "node:zlib";
import { R3mapError } from "../errors.js";
import { FLAG_DEFLATE } from "./blob-format.js";

/**
 * What `TransformStore` does before a chunk reaches the store:
 * - `"none"`: nothing;
 * - `"zeros"` (default): an all-zero chunk is deleted (or, for stores without
 *   `delete`, stored as a header-only marker), so never-written and
 *   written-zero chunks both read as zeros and cost nothing;
 * - `"deflate"`: zero elision plus raw DEFLATE (level 1) when it makes the chunk smaller.
 */
export type ChunkCompression = "none" | "zeros" | "deflate";

const MODES: readonly ChunkCompression[] = ["none", "zeros", "deflate"];

// Synchronous on purpose: zlib's async API runs on the libuv threadpool, which
// threads blocked on a mount can exhaust (docs/threading.md). A chunk is small.
const deflate = deflateRawSync;
const inflate = inflateRawSync;

/** Compresses chunks of at most `chunkSize` bytes as `mode` says. */
export class ChunkCompressor {
  readonly #zeros: Buffer;

  constructor(
    readonly mode: ChunkCompression,
    readonly chunkSize: number,
  ) {
    if (!MODES.includes(mode)) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `unknown compression "${mode}"; use none, zeros or deflate`,
      );
    }
    this.#zeros = Buffer.alloc(chunkSize);
  }

  /** Whether `plain` is a zero chunk this mode elides. */
  elides(plain: Buffer): boolean {
    if (this.mode === "none" || plain.length > this.#zeros.length) return false;
    return plain.equals(this.#zeros.subarray(0, plain.length));
  }

  /** The payload to store for `plain`, DEFLATEd (flag set) when that is on and makes it smaller. */
  compress(plain: Buffer): { flags: number; payload: Buffer } {
    if (this.mode === "deflate") {
      const packed = deflate(plain, { level: 1 });
      if (packed.length < plain.length) return { flags: FLAG_DEFLATE, payload: packed };
    }
    return { flags: 0, payload: plain };
  }

  /** The chunk of a stored payload with `flags`; inflating is bounded to a chunk. */
  decompress(chunk: number, flags: number, payload: Buffer): Buffer {
    if (!(flags & FLAG_DEFLATE)) return payload;
    try {
      return inflate(payload, { maxOutputLength: this.chunkSize });
    } catch (error) {
      throw new R3mapError(
        "ERR_INTEGRITY",
        `stored chunk ${chunk} does not decompress: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
}
