import * as fs from "node:fs";
import { StorageBackend } from "../backend.js";
import { fromSystemError, R3mapError } from "../errors.js";

export interface FileBackendOptions {
  /** Size of the resource. Defaults to the file's size (or the block device's). */
  size?: number;
  /** Create the file if it does not exist (it is then extended to `size`). */
  create?: boolean;
  readOnly?: boolean;
}

/**
 * A regular file or a block device.
 *
 * I/O uses positional *synchronous* system calls on purpose: a mount's data path
 * must not depend on the libuv threadpool, which threads blocked on the mount
 * itself can exhaust (see docs/threading.md). Local-file I/O is short, so the
 * event loop pays microseconds per call rather than risking a deadlock.
 * Reads past the end of a shorter regular file return zeros.
 */
export class FileBackend extends StorageBackend {
  /** Any byte range is read or written in place. */
  readonly byteRanges = true;
  readonly path: string;
  readonly #fd: number;

  private constructor(path: string, fd: number, size: number, readOnly: boolean) {
    super(size, readOnly);
    this.path = path;
    this.#fd = fd;
  }

  static open(path: string, options: FileBackendOptions = {}): FileBackend {
    const readOnly = options.readOnly ?? false;
    const flags = readOnly ? "r" : options.create ? fs.constants.O_RDWR | fs.constants.O_CREAT : "r+";
    let fd: number;
    try {
      fd = fs.openSync(path, flags, 0o644);
    } catch (error) {
      throw fromSystemError(error, `cannot open ${path}`);
    }
    try {
      const actual = sizeOfOpenFile(fd, path);
      const size = options.size ?? actual;
      if (!Number.isSafeInteger(size) || size < 0) {
        throw new R3mapError("ERR_INVALID_ARGUMENT", `size must be a non-negative integer, got ${size}`);
      }
      const stat = fs.fstatSync(fd);
      if (stat.isBlockDevice() && size > actual) {
        throw new R3mapError(
          "ERR_OUT_OF_RANGE",
          `${path} holds ${actual} bytes, smaller than the requested ${size}`,
        );
      }
      if (stat.isFile() && !readOnly && actual < size) fs.ftruncateSync(fd, size);
      return new FileBackend(path, fd, size, readOnly);
    } catch (error) {
      fs.closeSync(fd);
      throw fromSystemError(error, `cannot use ${path}`);
    }
  }

  /**
   * The open file descriptor, for native code that serves cached chunks
   * without calling JavaScript (pread on it). Owned by this backend: valid
   * until close().
   */
  get fd(): number {
    this.assertOpen();
    return this.#fd;
  }

  protected read(buffer: Uint8Array, offset: number): void {
    let done = 0;
    try {
      while (done < buffer.length) {
        const n = fs.readSync(this.#fd, buffer, done, buffer.length - done, offset + done);
        if (n === 0) break;
        done += n;
      }
    } catch (error) {
      throw fromSystemError(error, `read of ${this.path} at ${offset + done} failed`);
    }
    // A regular file shorter than the resource: the rest was never written.
    buffer.fill(0, done);
  }

  protected write(buffer: Uint8Array, offset: number): void {
    let done = 0;
    try {
      while (done < buffer.length) {
        done += fs.writeSync(this.#fd, buffer, done, buffer.length - done, offset + done);
      }
    } catch (error) {
      throw fromSystemError(error, `write to ${this.path} at ${offset + done} failed`);
    }
  }

  protected flush(): void {
    try {
      fs.fdatasyncSync(this.#fd);
    } catch (error) {
      throw fromSystemError(error, `sync of ${this.path} failed`);
    }
  }

  protected release(): void {
    fs.closeSync(this.#fd);
  }
}

/** Size of a regular file, or of a block device (whose `st_size` is 0), in bytes. */
export function sizeOfOpenFile(fd: number, path: string): number {
  const stat = fs.fstatSync(fd);
  if (!stat.isBlockDevice()) return stat.size;
  const major = Math.floor(stat.rdev / 256) & 0xfff;
  const minor = (stat.rdev & 0xff) | ((stat.rdev >> 12) & 0xfff00);
  try {
    const sectors = fs.readFileSync(`/sys/dev/block/${major}:${minor}/size`, "utf8");
    return Number(sectors.trim()) * 512;
  } catch (error) {
    throw fromSystemError(error, `cannot read the size of block device ${path}`);
  }
}
