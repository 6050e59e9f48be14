import * as fs from "node:fs";
import * as path from "node:path";
import { StorageBackend } from "../backend.js";
import { ChunkLayout } from "../chunk-layout.js";
import { fromSystemError, R3mapError } from "../errors.js";

export interface DirectoryBackendOptions {
  size: number;
  chunkSize: number;
  /** Open file handles kept at most; the least recently used is closed first. */
  maxOpenFiles?: number;
  readOnly?: boolean;
}

/**
 * One file per chunk in a directory, named by the chunk's byte offset in
 * decimal (as the original r3map names them). A chunk file that does not exist
 * reads as zeros, so an empty directory is an all-zero resource; reads never
 * create files. Any range may be read or written: it is split per chunk file.
 *
 * Like `FileBackend`, I/O is synchronous so that a mount's data path never
 * waits on the libuv threadpool; each call is therefore atomic with respect to
 * other calls on the same event loop, which is the per-chunk locking the
 * directory needs.
 */
export class DirectoryBackend extends StorageBackend {
  /** Any byte range is read or written in place. */
  readonly byteRanges = true;
  readonly directory: string;
  readonly layout: ChunkLayout;
  readonly #maxOpenFiles: number;
  /** Open descriptors by chunk, in least-recently-used-first order (Map keeps insertion order). */
  readonly #open = new Map<number, number>();

  private constructor(directory: string, options: DirectoryBackendOptions) {
    super(options.size, options.readOnly);
    this.directory = directory;
    this.layout = new ChunkLayout(options.size, options.chunkSize);
    this.#maxOpenFiles = options.maxOpenFiles ?? 512;
    if (!Number.isSafeInteger(this.#maxOpenFiles) || this.#maxOpenFiles < 1) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `maxOpenFiles must be at least 1, got ${this.#maxOpenFiles}`,
      );
    }
  }

  static open(directory: string, options: DirectoryBackendOptions): DirectoryBackend {
    try {
      if (!options.readOnly) fs.mkdirSync(directory, { recursive: true });
      if (!fs.statSync(directory).isDirectory()) {
        throw new R3mapError("ERR_INVALID_ARGUMENT", `${directory} is not a directory`);
      }
    } catch (error) {
      throw fromSystemError(error, `cannot use directory ${directory}`);
    }
    return new DirectoryBackend(directory, options);
  }

  /** Number of chunk files currently held open (for tests and metrics). */
  get openFiles(): number {
    return this.#open.size;
  }

  protected read(buffer: Uint8Array, offset: number): void {
    this.#eachChunk(offset, buffer.length, (chunk, within, at, length) => {
      const target = buffer.subarray(at, at + length);
      const fd = this.#descriptor(chunk, false);
      if (fd === undefined) {
        target.fill(0);
        return;
      }
      let done = 0;
      while (done < length) {
        const n = fs.readSync(fd, target, done, length - done, within + done);
        if (n === 0) break;
        done += n;
      }
      target.fill(0, done);
    });
  }

  protected write(buffer: Uint8Array, offset: number): void {
    this.#eachChunk(offset, buffer.length, (chunk, within, at, length) => {
      const fd = this.#descriptor(chunk, true)!;
      let done = 0;
      while (done < length) done += fs.writeSync(fd, buffer, at + done, length - done, within + done);
    });
  }

  protected flush(): void {
    try {
      for (const fd of this.#open.values()) fs.fdatasyncSync(fd);
      const dir = fs.openSync(this.directory, "r");
      try {
        fs.fsyncSync(dir);
      } finally {
        fs.closeSync(dir);
      }
    } catch (error) {
      throw fromSystemError(error, `sync of ${this.directory} failed`);
    }
  }

  protected release(): void {
    for (const fd of this.#open.values()) fs.closeSync(fd);
    this.#open.clear();
  }

  async trim(offset: number, length: number): Promise<void> {
    await this.writeZeroes(offset, length);
  }

  /** Whole chunks in the range are deleted (they then read as zeros); partial ones are zero-filled. */
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.assertOpen();
    if (this.readOnly) throw new R3mapError("ERR_READ_ONLY", "this backend was opened read-only");
    this.#eachChunk(offset, length, (chunk, within, _at, part) => {
      if (within === 0 && part === this.layout.lengthOf(chunk)) {
        this.#forget(chunk);
        fs.rmSync(this.#fileOf(chunk), { force: true });
      } else if (this.#descriptor(chunk, false) !== undefined) {
        this.write(new Uint8Array(part), this.layout.offsetOf(chunk) + within);
      }
    });
  }

  #fileOf(chunk: number): string {
    return path.join(this.directory, String(this.layout.offsetOf(chunk)));
  }

  /** The open descriptor of a chunk file; `undefined` if it does not exist and `create` is false. */
  #descriptor(chunk: number, create: boolean): number | undefined {
    const cached = this.#open.get(chunk);
    if (cached !== undefined) {
      this.#open.delete(chunk);
      this.#open.set(chunk, cached);
      return cached;
    }
    let fd: number;
    try {
      const mode = this.readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR;
      fd = fs.openSync(this.#fileOf(chunk), create ? mode | fs.constants.O_CREAT : mode);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT" && !create) return undefined;
      throw fromSystemError(error, `cannot open chunk file ${this.#fileOf(chunk)}`);
    }
    while (this.#open.size >= this.#maxOpenFiles) {
      const [oldest, oldFd] = this.#open.entries().next().value as [number, number];
      this.#open.delete(oldest);
      fs.closeSync(oldFd);
    }
    this.#open.set(chunk, fd);
    return fd;
  }

  #forget(chunk: number): void {
    const fd = this.#open.get(chunk);
    if (fd === undefined) return;
    this.#open.delete(chunk);
    fs.closeSync(fd);
  }

  /** Splits `[offset, offset+length)` at chunk boundaries: `(chunk, offset within chunk, offset within request, length)`. */
  #eachChunk(
    offset: number,
    length: number,
    visit: (chunk: number, within: number, at: number, length: number) => void,
  ): void {
    let at = 0;
    while (at < length) {
      const chunk = this.layout.indexOf(offset + at);
      const within = offset + at - this.layout.offsetOf(chunk);
      const part = Math.min(this.layout.chunkSize - within, length - at);
      try {
        visit(chunk, within, at, part);
      } catch (error) {
        throw fromSystemError(error, `I/O on chunk file ${this.#fileOf(chunk)} failed`);
      }
      at += part;
    }
  }
}
