import { ChunkBitmap } from "./chunk-bitmap.js";
import { R3mapError } from "./errors.js";

/** What a chunk state describes; a state made for something else is not reused. */
export interface ChunkStateIdentity {
  /** The resource's size in bytes. */
  size: number;
  chunkSize: number;
  /**
   * Which local cache the bits are about (say the device and inode of its
   * file): a cache replaced by a new, empty one makes the state worthless.
   */
  cache: string;
  /**
   * This boot of the machine (Linux: /proc/sys/kernel/random/boot_id). A
   * state left open — its process killed — is trusted on the same boot,
   * where the page cache kept everything the process wrote; after a reboot
   * the cache's last writes may be gone, so the state is discarded.
   */
  boot: string;
}

/** What opening a chunk state found. */
export type ChunkStateOutcome =
  | { kind: "new" }
  | { kind: "reused" /** The previous run closed cleanly. */; clean: boolean }
  | { kind: "discarded"; reason: string };

const MAGIC = 0x736d3372; // "r3ms", little-endian
const VERSION = 1;
const HEADER_BYTES = 4096;
const OPEN_FLAG = 1;
const CACHE_FIELD = { offset: 32, bytes: 256 };
const BOOT_FIELD = { offset: 288, bytes: 64 };

/**
 * A managed pipeline's chunk state laid out in one shared buffer that
 * outlives the process (the mount maps a file there): a header, then three
 * bitmaps — `presence` (chunks the local cache holds), `written` (chunks
 * native code wrote, which the pusher takes) and `pending` (chunks changed
 * and not yet pushed; see `PusherOptions.pending`). Handed to a
 * `ManagedPipeline` again after a restart, clean or not, every cached chunk is
 * reused and every unpushed change pushed.
 *
 * Header (little-endian): u32 magic "r3ms", u32 version, u32 flags (1: open),
 * f64 size at 16, f64 chunk size at 24, the cache's identity at 32 and the
 * boot's at 288 (u16 length + UTF-8 each); bitmaps from byte 4096, each
 * rounded up to 8 bytes.
 */
export class ChunkState {
  readonly presence: ChunkBitmap;
  readonly written: ChunkBitmap;
  readonly pending: ChunkBitmap;
  readonly outcome: ChunkStateOutcome;
  readonly #header: DataView;

  private constructor(buffer: SharedArrayBuffer, identity: ChunkStateIdentity) {
    const count = Math.ceil(identity.size / identity.chunkSize);
    if (buffer.byteLength < ChunkState.byteLength(identity.size, identity.chunkSize)) {
      throw new R3mapError("ERR_INVALID_ARGUMENT", "the chunk state buffer is too small for this resource");
    }
    this.#header = new DataView(buffer, 0, HEADER_BYTES);
    const bitmapBytes = bytesPerBitmap(count);
    const bitmap = (index: number) => new ChunkBitmap(count, buffer, HEADER_BYTES + index * bitmapBytes);
    this.presence = bitmap(0);
    this.written = bitmap(1);
    this.pending = bitmap(2);
    this.outcome = this.#check(identity);
    if (this.outcome.kind !== "reused") this.#reset(identity);
    // Open from now on: killed before `markClean`, the next run knows.
    this.#header.setUint32(8, OPEN_FLAG, true);
    this.#writeText(BOOT_FIELD, identity.boot);
  }

  /** Bytes a state for `size` bytes in chunks of `chunkSize` needs. */
  static byteLength(size: number, chunkSize: number): number {
    return HEADER_BYTES + 3 * bytesPerBitmap(Math.ceil(size / chunkSize));
  }

  /**
   * Takes the state in `buffer` (all zeros: a new one) and marks it open.
   * Throws when it was made for another size or chunk size (its chunks would
   * mean other bytes); discards it, with the reason in `outcome`, when it
   * describes another cache or was left open on an earlier boot.
   */
  static over(buffer: SharedArrayBuffer, identity: ChunkStateIdentity): ChunkState {
    if (!Number.isSafeInteger(identity.size) || identity.size < 0) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `size must be a non-negative integer, got ${identity.size}`,
      );
    }
    if (!Number.isSafeInteger(identity.chunkSize) || identity.chunkSize <= 0) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `chunk size must be a positive integer, got ${identity.chunkSize}`,
      );
    }
    return new ChunkState(buffer, identity);
  }

  /** The previous run ended cleanly and the cache is synced: call once the final push is done and the cache file synced. */
  markClean(): void {
    this.#header.setUint32(8, 0, true);
  }

  #check(identity: ChunkStateIdentity): ChunkStateOutcome {
    const magic = this.#header.getUint32(0, true);
    if (magic === 0) return { kind: "new" };
    if (magic !== MAGIC || this.#header.getUint32(4, true) !== VERSION) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        "the chunk state file is not one (wrong magic or version): name another file, or remove it to start with an empty cache",
      );
    }
    const size = this.#header.getFloat64(16, true);
    const chunkSize = this.#header.getFloat64(24, true);
    if (size !== identity.size || chunkSize !== identity.chunkSize) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `the chunk state describes ${size} bytes in ${chunkSize}-byte chunks, not ${identity.size} in ${identity.chunkSize}: ` +
          "use the size and chunk size it was made with, or remove it (and its cache) to start over",
      );
    }
    if (this.#readText(CACHE_FIELD) !== identity.cache) {
      return {
        kind: "discarded",
        reason: "the local cache is not the one the state describes (it was replaced)",
      };
    }
    const open = (this.#header.getUint32(8, true) & OPEN_FLAG) !== 0;
    if (open && this.#readText(BOOT_FIELD) !== identity.boot) {
      return {
        kind: "discarded",
        reason:
          "the previous run stopped uncleanly before the machine restarted: the cache's last writes may be lost",
      };
    }
    return { kind: "reused", clean: !open };
  }

  #reset(identity: ChunkStateIdentity): void {
    for (const bitmap of [this.presence, this.written, this.pending]) bitmap.words.fill(0);
    this.#header.setUint32(0, MAGIC, true);
    this.#header.setUint32(4, VERSION, true);
    this.#header.setFloat64(16, identity.size, true);
    this.#header.setFloat64(24, identity.chunkSize, true);
    this.#writeText(CACHE_FIELD, identity.cache);
  }

  #readText(field: { offset: number; bytes: number }): string {
    const length = Math.min(this.#header.getUint16(field.offset, true), field.bytes - 2);
    return Buffer.from(this.#header.buffer, field.offset + 2, length).toString("utf8");
  }

  #writeText(field: { offset: number; bytes: number }, text: string): void {
    const bytes = Buffer.from(text, "utf8");
    if (bytes.length > field.bytes - 2) {
      throw new R3mapError("ERR_INVALID_ARGUMENT", `"${text}" is too long for the chunk state header`);
    }
    this.#header.setUint16(field.offset, bytes.length, true);
    new Uint8Array(this.#header.buffer, field.offset + 2, field.bytes - 2).fill(0).set(bytes);
  }
}

function bytesPerBitmap(count: number): number {
  return Math.ceil(ChunkBitmap.byteLengthFor(count) / 8) * 8;
}
