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
 * A write replaces each chunk it touches whole: the chunk's new bytes go to a
 * temporary file beside it (`.<offset>.new`), which is then renamed over the
 * chunk file. A write that fails — a full disk — leaves the chunk's earlier
 * bytes intact, never a truncated or zeroed file. A write of part of a chunk
 * therefore reads and rewrites the rest of it. `sync` makes every chunk
 * replaced since the last sync durable, then the directory (the renames).
 *
 * Like `FileBackend`, I/O is synchronous so that a mount's data path never
 * waits on the libuv threadpool; each call is therefore atomic with respect to
 * other calls on the same event loop, which is the per-chunk locking the
 * directory needs.
 */
/** Temporary files of chunk replacements (`.<offset>.new`). */
const TEMPORARY = /^\.\d+\.new$/;

export class DirectoryBackend extends StorageBackend {
  /**
   * Any byte range is read or written; a partial chunk is rewritten whole
   * here, from the local file, which costs a caller less than doing it
   * itself over the backend.
   */
  readonly byteRanges = true;
  readonly directory: string;
  readonly layout: ChunkLayout;
  readonly #maxOpenFiles: number;
  /** Open descriptors by chunk, in least-recently-used-first order (Map keeps insertion order). */
  readonly #open = new Map<number, number>();
  /** Chunks replaced or removed since the last sync: their files (and the directory) are synced next. */
  readonly #unsynced = new Set<number>();

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
      // A replacement that a crash interrupted before its rename: the chunk file still holds the old bytes.
      if (!options.readOnly) {
        for (const name of fs.readdirSync(directory)) {
          if (TEMPORARY.test(name)) fs.rmSync(path.join(directory, name), { force: true });
        }
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
      this.#readChunk(chunk, buffer.subarray(at, at + length), within);
    });
  }

  /** Fills `target` from the chunk's file at `within`; what the file does not hold reads as zeros. */
  #readChunk(chunk: number, target: Uint8Array, within: number): void {
    const fd = this.#descriptor(chunk);
    if (fd === undefined) {
      target.fill(0);
      return;
    }
    let done = 0;
    while (done < target.length) {
      const n = fs.readSync(fd, target, done, target.length - done, within + done);
      if (n === 0) break;
      done += n;
    }
    target.fill(0, done);
  }

  protected write(buffer: Uint8Array, offset: number): void {
    this.#eachChunk(offset, buffer.length, (chunk, within, at, length) => {
      const part = buffer.subarray(at, at + length);
      this.#replace(
        chunk,
        length === this.layout.lengthOf(chunk) ? part : this.#patched(chunk, within, part),
      );
    });
  }

  /** The chunk's current bytes with `part` written at `within`. */
  #patched(chunk: number, within: number, part: Uint8Array): Uint8Array {
    const whole = new Uint8Array(this.layout.lengthOf(chunk));
    this.#readChunk(chunk, whole, 0);
    whole.set(part, within);
    return whole;
  }

  /**
   * Writes `bytes` (the whole chunk) to a temporary file and renames it over
   * the chunk file: the chunk holds its old bytes or its new ones, whatever
   * fails. The new file's descriptor replaces the old one in the cache.
   */
  #replace(chunk: number, bytes: Uint8Array): void {
    const temporary = this.#temporaryOf(chunk);
    const fd = fs.openSync(temporary, "w+");
    try {
      let done = 0;
      while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done, done);
      fs.renameSync(temporary, this.#fileOf(chunk));
    } catch (error) {
      fs.closeSync(fd);
      fs.rmSync(temporary, { force: true });
      throw error;
    }
    this.#forget(chunk);
    this.#remember(chunk, fd);
    this.#unsynced.add(chunk);
  }

  protected flush(): void {
    try {
      // Files closed since they were replaced (the open-file cap) are opened again to be synced.
      for (const chunk of this.#unsynced) {
        const fd = this.#descriptor(chunk);
        if (fd !== undefined) fs.fdatasyncSync(fd);
      }
      const dir = fs.openSync(this.directory, "r");
      try {
        fs.fsyncSync(dir);
      } finally {
        fs.closeSync(dir);
      }
      this.#unsynced.clear();
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
        this.#unsynced.add(chunk);
      } else if (this.#descriptor(chunk) !== undefined) {
        this.write(new Uint8Array(part), this.layout.offsetOf(chunk) + within);
      }
    });
  }

  #fileOf(chunk: number): string {
    return path.join(this.directory, String(this.layout.offsetOf(chunk)));
  }

  #temporaryOf(chunk: number): string {
    return path.join(this.directory, `.${this.layout.offsetOf(chunk)}.new`);
  }

  /** The open descriptor of a chunk file; `undefined` if it does not exist. */
  #descriptor(chunk: number): number | undefined {
    const cached = this.#open.get(chunk);
    if (cached !== undefined) {
      this.#open.delete(chunk);
      this.#open.set(chunk, cached);
      return cached;
    }
    let fd: number;
    try {
      const mode = this.readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR;
      fd = fs.openSync(this.#fileOf(chunk), mode);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw fromSystemError(error, `cannot open chunk file ${this.#fileOf(chunk)}`);
    }
    this.#remember(chunk, fd);
    return fd;
  }

  /** Caches a chunk file's descriptor, closing the least recently used one beyond the cap. */
  #remember(chunk: number, fd: number): void {
    while (this.#open.size >= this.#maxOpenFiles) {
      const [oldest, oldFd] = this.#open.entries().next().value as [number, number];
      this.#open.delete(oldest);
      fs.closeSync(oldFd);
    }
    this.#open.set(chunk, fd);
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
