/**
 * A file or block device mapped into memory as a Buffer (the slice frontend
 * over a file or device): write through the Buffer, `sync()` to msync, `lock()`
 * to keep it resident, `close()` to detach the Buffer and unmap.
 */
import { constants } from "node:buffer";
import { closeSync, constants as fsConstants, fstatSync, openSync } from "node:fs";
import { R3mapError } from "@r3map/core";
import { callNative, type NativeMappedFile, uffdNative } from "./uffd-native.js";

export interface MapFileOptions {
  /** Page-aligned start in the file. Default 0. */
  offset?: number;
  /** Bytes to map. Default: from offset to the end of the file (required for block devices). */
  length?: number;
  /** MAP_SHARED (writes reach the file; default) or MAP_PRIVATE (copy-on-write). */
  shared?: boolean;
  /** Map read-write (default false). A path is then opened read-write. */
  writable?: boolean;
}

export class MappedFile {
  readonly #native: NativeMappedFile;
  readonly length: number;
  #buffer: Buffer | undefined;
  #closed = false;

  private constructor(native: NativeMappedFile, length: number) {
    this.#native = native;
    this.length = length;
  }

  /** The whole mapping as one Buffer (at most 4 GiB: use view() for parts of larger ones). Detached by close(). */
  get buffer(): Buffer {
    this.#assertOpen();
    if (this.length > constants.MAX_LENGTH) {
      throw new R3mapError(
        "ERR_OUT_OF_RANGE",
        "the mapping is larger than a Buffer can be: use view(offset, length)",
      );
    }
    this.#buffer ??= Buffer.from(callNative(() => this.#native.view()));
    return this.#buffer;
  }

  /** A Buffer over part of the mapping. Detached by close(). */
  view(offset: number, length: number): Buffer {
    this.#assertOpen();
    return Buffer.from(callNative(() => this.#native.view(offset, length)));
  }

  /** Maps `target` (an open fd, or a path opened and closed here). */
  static map(target: number | string, options: MapFileOptions = {}): MappedFile {
    const writable = options.writable === true;
    const fd = typeof target === "number" ? target : openPath(target, writable);
    try {
      const offset = options.offset ?? 0;
      const length = options.length ?? fstatSync(fd).size - offset;
      if (!Number.isSafeInteger(length) || length <= 0) {
        throw new R3mapError(
          "ERR_INVALID_ARGUMENT",
          "nothing to map: pass a positive length (block devices report size 0 to fstat)",
        );
      }
      const native = callNative(
        () =>
          new (uffdNative().MappedFile)({ fd, offset, length, shared: options.shared !== false, writable }),
      );
      return new MappedFile(native, length);
    } finally {
      // The mapping keeps the file open by itself.
      if (typeof target !== "number") closeSync(fd);
    }
  }

  /** msync: writes dirty pages of the range back to the file (and waits, unless `async`). */
  sync(offset = 0, length = this.length - offset, options: { async?: boolean } = {}): void {
    this.#assertOpen();
    callNative(() => this.#native.sync(offset, length, options.async === true));
  }

  /** mlock: keeps the range resident (needs CAP_IPC_LOCK or a large enough `ulimit -l`). */
  lock(offset = 0, length = this.length - offset): void {
    this.#assertOpen();
    callNative(() => this.#native.lock(offset, length));
  }

  unlock(offset = 0, length = this.length - offset): void {
    this.#assertOpen();
    callNative(() => this.#native.unlock(offset, length));
  }

  /** Detaches `buffer` (later reads see nothing instead of faulting) and unmaps. Does not msync. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#native.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new R3mapError("ERR_CLOSED", "the mapping is closed; map the file again");
  }
}

/** Shorthand for `MappedFile.map`. */
export function mapFile(target: number | string, options: MapFileOptions = {}): MappedFile {
  return MappedFile.map(target, options);
}

function openPath(path: string, writable: boolean): number {
  try {
    return openSync(path, writable ? fsConstants.O_RDWR : fsConstants.O_RDONLY);
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new R3mapError(
      code === "EACCES" || code === "EPERM" ? "ERR_PERMISSION" : "ERR_IO",
      `cannot open ${path}: ${(error as Error).message}`,
      {
        cause: error,
        ...(code === undefined ? {} : { errno: code }),
      },
    );
  }
}
