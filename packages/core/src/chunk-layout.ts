import { R3mapError } from "./errors.js";

/**
 * How a resource of `size` bytes is cut into chunks of `chunkSize` bytes.
 * The last chunk is shorter when `size` is not a multiple of `chunkSize`; it is
 * still a chunk (the original r3map rounded down and never pulled the tail).
 */
export class ChunkLayout {
  readonly count: number;

  constructor(
    readonly size: number,
    readonly chunkSize: number,
  ) {
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new R3mapError("ERR_INVALID_ARGUMENT", `size must be a non-negative integer, got ${size}`);
    }
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) {
      throw new R3mapError("ERR_INVALID_ARGUMENT", `chunk size must be a positive integer, got ${chunkSize}`);
    }
    this.count = Math.ceil(size / chunkSize);
  }

  offsetOf(chunk: number): number {
    return chunk * this.chunkSize;
  }

  /** Length of chunk `chunk`: `chunkSize`, except possibly for the last one. */
  lengthOf(chunk: number): number {
    return Math.min(this.chunkSize, this.size - chunk * this.chunkSize);
  }

  /** The chunk that holds byte `offset`. */
  indexOf(offset: number): number {
    return Math.floor(offset / this.chunkSize);
  }

  /** Chunks overlapped by `[offset, offset + length)`, as a half-open index range. */
  span(offset: number, length: number): [first: number, end: number] {
    if (length === 0) return [0, 0];
    return [this.indexOf(offset), this.indexOf(offset + length - 1) + 1];
  }
}

/**
 * Throws the error a backend owes for a request outside `[0, size)`, or for an
 * offset or length that is not a non-negative safe integer.
 */
export function checkRange(size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `offset must be a non-negative integer, got ${offset}`);
  }
  if (offset + length > size) {
    throw new R3mapError(
      "ERR_OUT_OF_RANGE",
      `request [${offset}, ${offset + length}) reaches past the end of the resource (${size} bytes)`,
    );
  }
}
