import { StorageBackend } from "../backend.js";
import { R3mapError } from "../errors.js";

/** Typed arrays stop at 4 GiB in Node 20, so larger memories are cut into segments. */
export const MEMORY_SEGMENT_SIZE = 1 << 30;

export interface MemoryBackendOptions {
  readOnly?: boolean;
}

export interface ExternalMemoryOptions extends MemoryBackendOptions {
  /** Runs when the backend is closed (unmap the memory there). */
  onClose?: () => void;
}

/**
 * Bytes in RAM, held in `SharedArrayBuffer` segments of `MEMORY_SEGMENT_SIZE`
 * bytes so that worker threads and native code can read and write them in
 * place. Zero-filled on creation. `MemoryBackend.over` serves memory someone
 * else allocated instead (a mapping).
 */
export class MemoryBackend extends StorageBackend {
  /** Any byte range is read or written in place. */
  readonly byteRanges = true;
  readonly segments: readonly Uint8Array[];
  readonly #onClose: (() => void) | undefined;

  /** `external` is for `MemoryBackend.over`, which checks it. */
  constructor(size: number, options: MemoryBackendOptions = {}, external?: readonly Uint8Array[]) {
    super(size, options.readOnly);
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new R3mapError("ERR_INVALID_ARGUMENT", `memory size must be a non-negative integer, got ${size}`);
    }
    this.#onClose = (options as ExternalMemoryOptions).onClose;
    if (external) {
      this.segments = external;
      return;
    }
    const segments: Uint8Array[] = [];
    for (let start = 0; start < size; start += MEMORY_SEGMENT_SIZE) {
      segments.push(new Uint8Array(new SharedArrayBuffer(Math.min(MEMORY_SEGMENT_SIZE, size - start))));
    }
    this.segments = segments;
  }

  /**
   * A backend over existing memory, e.g. a shared mapping of a file: every
   * segment but the last must be `MEMORY_SEGMENT_SIZE` bytes. Its content is
   * kept as it is.
   */
  static over(segments: readonly Uint8Array[], options: ExternalMemoryOptions = {}): MemoryBackend {
    const last = segments.length - 1;
    if (segments.some((segment, i) => i < last && segment.length !== MEMORY_SEGMENT_SIZE)) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `every memory segment but the last must be ${MEMORY_SEGMENT_SIZE} bytes`,
      );
    }
    const size = segments.reduce((sum, segment) => sum + segment.length, 0);
    return new MemoryBackend(size, options, segments);
  }

  /** A backend over a copy of `bytes`. */
  static from(bytes: Uint8Array, options: MemoryBackendOptions = {}): MemoryBackend {
    const backend = new MemoryBackend(bytes.length, options);
    backend.write(bytes, 0);
    return backend;
  }

  /**
   * The backend's own memory for `[offset, offset + length)` when it lies in
   * one segment (else undefined): a fetch can land there without a copy.
   */
  view(offset: number, length: number): Uint8Array | undefined {
    if (this.closed || offset < 0 || offset + length > this.size) return undefined;
    const start = offset % MEMORY_SEGMENT_SIZE;
    if (start + length > MEMORY_SEGMENT_SIZE) return undefined;
    return this.segments[Math.floor(offset / MEMORY_SEGMENT_SIZE)]!.subarray(start, start + length);
  }

  protected read(buffer: Uint8Array, offset: number): void {
    this.#each(offset, buffer.length, (segment, start, end, at) =>
      buffer.set(segment.subarray(start, end), at),
    );
  }

  protected write(buffer: Uint8Array, offset: number): void {
    this.#each(offset, buffer.length, (segment, start, end, at) =>
      segment.set(buffer.subarray(at, at + end - start), start),
    );
  }

  protected flush(): void {}

  protected release(): void {
    this.#onClose?.();
  }

  async trim(offset: number, length: number): Promise<void> {
    await this.writeZeroes(offset, length);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    this.assertOpen();
    if (this.readOnly) throw new R3mapError("ERR_READ_ONLY", "this backend was opened read-only");
    this.#each(offset, length, (segment, start, end) => segment.fill(0, start, end));
  }

  /** Calls `visit` for each segment piece of `[offset, offset + length)`; `at` is the position within the request. */
  #each(
    offset: number,
    length: number,
    visit: (segment: Uint8Array, start: number, end: number, at: number) => void,
  ): void {
    let at = 0;
    while (at < length) {
      const position = offset + at;
      const segment = this.segments[Math.floor(position / MEMORY_SEGMENT_SIZE)]!;
      const start = position % MEMORY_SEGMENT_SIZE;
      const end = Math.min(segment.length, start + length - at);
      visit(segment, start, end, at);
      at += end - start;
    }
  }
}
