import * as fs from "node:fs";
import { type Backend, checkRange, R3mapError, settleAll } from "@r3map/core";
import { type HeadCounters, HeadScheduler, type HeadSchedulerOptions } from "./head-scheduler.js";
import type { Tape } from "./tape.js";
import { TapeIndex } from "./tape-index.js";

export interface TapeBackendOptions extends HeadSchedulerOptions {
  /** The device's size in bytes (need not be a multiple of the block size: the last record is padded). */
  size: number;
  /** The LMDB file that maps blocks to tape positions. */
  index: string;
}

/**
 * A tape as a Backend: one tape record per block of the device (block = the
 * drive's record size), append-only. A write appends a record per block at
 * the end of data and remembers block → position; a read looks the block up
 * and seeks there; a block never written reads as zeros without touching the
 * tape. Overwritten records stay on the tape (it is a log; nothing is
 * compacted), so the index is what makes the data findable: it must be kept
 * with the tape.
 *
 * Requests must be whole blocks (any number of them; the last block may be
 * short). Reads that arrive together are served in tape order, one pass of
 * the head (`HeadScheduler`). New positions reach the index on `sync()`,
 * after the tape was flushed: until then reads find them in memory.
 */
export class TapeBackend implements Backend {
  readonly size: number;
  readonly blockSize: number;
  readonly readOnly: boolean;
  /** Positions written but not yet in the index, per block (the newest wins), and in tape order. */
  readonly #staged = new Map<number, number>();
  #stagedOrder: Array<[block: number, position: number]> = [];
  /** Writes queued per block: a read of such a block waits its turn instead of reading zeros. */
  readonly #writing = new Map<number, number>();
  #closing: Promise<void> | undefined;

  private constructor(
    readonly tape: Tape,
    readonly index: TapeIndex,
    readonly head: HeadScheduler,
    size: number,
  ) {
    this.size = size;
    this.blockSize = tape.blockSize;
    this.readOnly = tape.readOnly;
  }

  /**
   * Checks the tape against the index and opens both. Refuses a drive in
   * variable-block mode, a non-empty tape without its index, an index made
   * for another layout, and an index that points past the end of data (the
   * wrong tape). Closes `tape` when it refuses.
   */
  static async open(tape: Tape, options: TapeBackendOptions): Promise<TapeBackend> {
    let index: TapeIndex | undefined;
    try {
      if (!Number.isSafeInteger(options.size) || options.size <= 0) {
        throw new R3mapError("ERR_INVALID_ARGUMENT", `size must be a positive integer, got ${options.size}`);
      }
      if (tape.blockSize === 0) {
        throw new R3mapError(
          "ERR_NOT_SUPPORTED",
          `${tape.name} is in variable-block mode (block size 0); tapisk needs fixed-size records: ` +
            `set a block size first, e.g. \`mt -f ${tape.name} setblk 4096\``,
        );
      }
      const end = await tape.seekEndOfData();
      if (!fs.existsSync(options.index) && end.dataRecords > 0) {
        throw new R3mapError(
          "ERR_INVALID_ARGUMENT",
          `${tape.name} holds ${end.dataRecords} records, but the index ${options.index} does not exist: ` +
            "without it tapisk cannot tell which record holds which block (every read would give zeros). " +
            `Pass the index written with this tape (--index), or erase the tape to start over (mt -f ${tape.name} erase).`,
          { errno: "ENOENT" },
        );
      }
      index = TapeIndex.open(
        options.index,
        { blockSize: tape.blockSize, size: options.size },
        { readOnly: tape.readOnly },
      );
      if (index.highestPosition >= end.position) {
        throw new R3mapError(
          "ERR_INVALID_ARGUMENT",
          `the index ${options.index} points at block ${index.highestPosition}, but the data on ${tape.name} ends at block ${end.position}: ` +
            "this is not the tape the index was written with (or it was rewound and overwritten)",
        );
      }
      const head = new HeadScheduler(tape, options, { head: end.position, end: end.position });
      return new TapeBackend(tape, index, head, options.size);
    } catch (error) {
      await index?.close().catch(() => {});
      await tape.close().catch(() => {});
      throw error;
    }
  }

  /** Seeks and records the head made. */
  get counters(): Readonly<HeadCounters> {
    return this.head.counters;
  }

  /** The tape position holding `block` now, or undefined when it was never written. */
  positionOf(block: number): number | undefined {
    return this.#staged.get(block) ?? this.index.get(block);
  }

  async readAt(buffer: Uint8Array, offset: number): Promise<void> {
    const [first, count] = this.#blocks(buffer.length, offset);
    const reads: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const block = first + i;
      const part = buffer.subarray(i * this.blockSize, Math.min(buffer.length, (i + 1) * this.blockSize));
      reads.push(this.#readBlock(block, part));
    }
    await settleAll(reads);
  }

  async writeAt(buffer: Uint8Array, offset: number): Promise<void> {
    if (this.readOnly) {
      throw new R3mapError("ERR_READ_ONLY", `${this.tape.name} was opened read-only`, { errno: "EROFS" });
    }
    const [first, count] = this.#blocks(buffer.length, offset);
    const writes: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const block = first + i;
      let record = buffer.subarray(i * this.blockSize, (i + 1) * this.blockSize);
      if (record.length < this.blockSize) {
        // The device's short last block still fills a whole record.
        const padded = new Uint8Array(this.blockSize);
        padded.set(record);
        record = padded;
      }
      writes.push(this.#writeBlock(block, record));
    }
    await settleAll(writes);
  }

  /**
   * Flushes the tape, then adds the positions written since the last sync to
   * the index in one transaction, in tape order (never the other way round:
   * the index must not name a record the tape might lose).
   */
  async sync(): Promise<void> {
    this.#assertOpen();
    await this.#commit();
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        if (!this.readOnly) await this.#commit();
        await this.head.idle();
      } finally {
        await this.index.close();
        await this.tape.close();
      }
    })();
    return this.#closing;
  }

  #commit(): Promise<void> {
    return this.head.exclusive(async () => {
      if (this.#stagedOrder.length === 0) return;
      const entries = this.#stagedOrder;
      this.#stagedOrder = [];
      try {
        await this.tape.flush();
        this.index.commit(entries);
      } catch (error) {
        this.#stagedOrder = [...entries, ...this.#stagedOrder];
        throw error;
      }
      for (const [block, position] of entries) {
        if (this.#staged.get(block) === position) this.#staged.delete(block);
      }
    });
  }

  async #readBlock(block: number, part: Uint8Array): Promise<void> {
    this.#assertOpen();
    // Never written, and no write of it queued: zeros, without the tape.
    if (!this.#writing.has(block) && this.positionOf(block) === undefined) {
      part.fill(0);
      return;
    }
    const record = part.length === this.blockSize ? part : new Uint8Array(this.blockSize);
    // Located when the head gets to it, after the writes queued before it (a pass serves writes first).
    await this.head.read(() => this.positionOf(block), record);
    if (record !== part) part.set(record.subarray(0, part.length));
  }

  async #writeBlock(block: number, record: Uint8Array): Promise<void> {
    this.#assertOpen();
    this.#writing.set(block, (this.#writing.get(block) ?? 0) + 1);
    try {
      await this.head.write(record, (position) => {
        this.#staged.set(block, position);
        this.#stagedOrder.push([block, position]);
      });
    } finally {
      const left = this.#writing.get(block)! - 1;
      if (left === 0) this.#writing.delete(block);
      else this.#writing.set(block, left);
    }
  }

  /** The first block and the block count of a request, or the error it deserves. */
  #blocks(length: number, offset: number): [first: number, count: number] {
    this.#assertOpen();
    checkRange(this.size, offset, length);
    const end = offset + length;
    if (offset % this.blockSize !== 0 || length === 0 || (end % this.blockSize !== 0 && end !== this.size)) {
      throw new R3mapError(
        "ERR_MISALIGNED",
        `tape requests must be whole ${this.blockSize}-byte blocks; got ${length} bytes at ${offset}`,
      );
    }
    return [offset / this.blockSize, Math.ceil(length / this.blockSize)];
  }

  #assertOpen(): void {
    if (this.#closing) throw new R3mapError("ERR_CLOSED", `the tape backend for ${this.tape.name} is closed`);
  }
}
