import { R3mapError } from "./errors.js";

/**
 * One bit per chunk in a `SharedArrayBuffer`, readable from other threads and
 * from native code without calling into JavaScript.
 *
 * Layout (a contract with `@r3map/native`): an array of little-endian 32-bit
 * words; chunk `i` is set iff `(word[i >> 5] >> (i & 31)) & 1`. Bits are set
 * with an atomic OR *after* the chunk's bytes are fully stored, and cleared with
 * an atomic AND, so a reader that sees a set bit (acquire load) sees the data.
 */
export class ChunkBitmap {
  readonly words: Int32Array;

  /** `byteOffset`: where in `buffer` the words start (a multiple of 4), for bitmaps that share one buffer. */
  constructor(
    readonly count: number,
    buffer?: SharedArrayBuffer,
    byteOffset = 0,
  ) {
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `chunk count must be a non-negative integer, got ${count}`,
      );
    }
    const bytes = ChunkBitmap.byteLengthFor(count);
    const shared = buffer ?? new SharedArrayBuffer(bytes);
    if (!Number.isSafeInteger(byteOffset) || byteOffset < 0 || byteOffset % 4 !== 0) {
      throw new R3mapError("ERR_INVALID_ARGUMENT", `byteOffset must be a multiple of 4, got ${byteOffset}`);
    }
    if (shared.byteLength < byteOffset + bytes) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `bitmap buffer holds ${shared.byteLength - byteOffset} bytes, needs ${bytes}`,
      );
    }
    this.words = new Int32Array(shared, byteOffset, bytes / 4);
  }

  static byteLengthFor(count: number): number {
    return Math.max(4, Math.ceil(count / 32) * 4);
  }

  /** The shared memory, to hand to a worker or to native code (the words start at `words.byteOffset`). */
  get buffer(): SharedArrayBuffer {
    return this.words.buffer as SharedArrayBuffer;
  }

  has(chunk: number): boolean {
    return ((Atomics.load(this.words, chunk >>> 5) >>> (chunk & 31)) & 1) === 1;
  }

  /** Sets the bit; returns true if it was clear before. */
  set(chunk: number): boolean {
    const mask = 1 << (chunk & 31);
    return (Atomics.or(this.words, chunk >>> 5, mask) & mask) === 0;
  }

  /** Clears the bit; returns true if it was set before. */
  clear(chunk: number): boolean {
    const mask = 1 << (chunk & 31);
    return (Atomics.and(this.words, chunk >>> 5, ~mask) & mask) !== 0;
  }

  setAll(): void {
    for (let chunk = 0; chunk < this.count; chunk++) this.set(chunk);
  }

  /** Clears every bit, a word at a time atomically, and calls `visit` for each bit that was set. */
  takeAll(visit: (chunk: number) => void): void {
    for (let i = 0; i < this.words.length; i++) {
      if (Atomics.load(this.words, i) === 0) continue;
      eachBit(Atomics.exchange(this.words, i, 0), i, visit);
    }
  }

  /**
   * Moves every set bit into `target` and calls `visit` for each: a word's
   * bits are set in `target` before they are cleared here (compare-and-swap,
   * retried when the word changed), so at no instant is a bit in neither —
   * when both bitmaps live in a mapped file, a process killed halfway loses
   * none.
   */
  moveAllTo(target: ChunkBitmap, visit: (chunk: number) => void): void {
    for (let i = 0; i < this.words.length; i++) {
      let bits = Atomics.load(this.words, i);
      while (bits !== 0) {
        Atomics.or(target.words, i, bits);
        const seen = Atomics.compareExchange(this.words, i, bits, 0);
        if (seen === bits) break;
        bits = seen;
      }
      eachBit(bits, i, visit);
    }
  }

  /** Calls `visit` for each set bit, clearing none. */
  forEach(visit: (chunk: number) => void): void {
    for (let i = 0; i < this.words.length; i++) eachBit(Atomics.load(this.words, i), i, visit);
  }

  /** Number of set bits. */
  cardinality(): number {
    let total = 0;
    for (let i = 0; i < this.words.length; i++) {
      let v = Atomics.load(this.words, i) >>> 0;
      // Count set bits (SWAR popcount).
      v -= (v >>> 1) & 0x55555555;
      v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
      total += (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
    }
    return total;
  }
}

/** Calls `visit` with the chunk of each set bit of word `index`, lowest first. */
function eachBit(word: number, index: number, visit: (chunk: number) => void): void {
  let bits = word >>> 0;
  while (bits !== 0) {
    const bit = 31 - Math.clz32(bits & -bits);
    visit(index * 32 + bit);
    bits = (bits & (bits - 1)) >>> 0;
  }
}
