/**
 * The file device: a FUSE mount holding one regular file of a fixed size,
 * served by native threads from /dev/fuse. Reads of chunks present in the
 * local cache never reach JavaScript; misses, writes, flush and fsync call the
 * handlers below on the thread that mounted.
 *
 * Deadlock rule: the thread that runs the handlers must never itself touch the
 * file (read it synchronously, mmap it, …) while a handler is needed to answer.
 * Run the engine on a worker thread (or touch the file from one).
 */
import { setMaxListeners } from "node:events";
import * as fs from "node:fs";
import { constants as osConstants } from "node:os";
import * as path from "node:path";
import {
  type Backend,
  type ChunkBitmap,
  errnoOf,
  fromSystemError,
  type NbdHandOff,
  R3mapError,
} from "@r3map/core";
import { addon, FuseRequestKind, type NativeFuseOptions, type NativeFuseServer } from "./addon.js";
import { checkPositiveInteger, mapNativeError } from "./fuse-errors.js";
import { nativeHandOff } from "./nbd-hand-off.js";

/**
 * Called on the thread that mounted. `signal` aborts when the request times
 * out (`requestTimeoutMs`) or the file closes; the request is answered then
 * (ETIMEDOUT / ENOTCONN) whether or not the handler stops.
 */
export interface FuseFileHandlers {
  /**
   * A read of a range that is not entirely present locally. Resolve with the
   * bytes, or with nothing once they are stored in the local cache and their
   * presence bits are set (native code then answers from the cache).
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: lets a plain `async () => { … }` handler answer from the cache
  onRead?(offset: number, length: number, signal: AbortSignal): Promise<Uint8Array | undefined | void>;
  /** A write; `data` is the caller's copy. */
  onWrite?(offset: number, data: Uint8Array, signal: AbortSignal): Promise<void>;
  /** close(2) of a file descriptor of the file. */
  onFlush?(signal: AbortSignal): Promise<void>;
  /** fsync(2)/fdatasync(2) of the file (also a loop device's flush). */
  onFsync?(signal: AbortSignal): Promise<void>;
  /**
   * With `local` and `remoteReads`: a read of a range not entirely present
   * was sent to the NBD server (it is answered from there, not cached). A
   * notice: nothing waits for it — a managed mount pulls those chunks next.
   */
  onRemoteRead?(offset: number, length: number): void;
  /**
   * With `local.dirty` and `local.inFlight`: a WRITE covering whole chunks
   * that were not present was stored natively (their in-flight bits taken
   * meanwhile), and those chunks — this range — are present now. A notice.
   */
  onStoredWhole?(offset: number, length: number): void;
}

/** Where present chunks are read from, natively. */
export interface FuseLocalCache {
  chunkSize: number;
  /** Presence of each chunk; without it every chunk counts as present. */
  presence?: ChunkBitmap;
  /** Memory cache: consecutive segments (e.g. `MemoryBackend.segments`), each `segmentSize` bytes but the last. */
  segments?: readonly Uint8Array[];
  segmentSize?: number;
  /**
   * Advise transparent huge pages for `segments` (MADV_HUGEPAGE; default true). Native reads copy from this
   * memory, and with 4 KiB pages the kernel's per-page walks cost as much as the copy on a VM. Memory the
   * engine fills after mounting then faults in 2 MiB at a time.
   */
  hugePages?: boolean;
  /** Or a file descriptor to pread from (kept open by the caller). */
  fd?: number;
  /**
   * Given, a WRITE whose chunks are all present is stored in the cache
   * natively and its chunks' bits set here (an atomic OR after the bytes are
   * stored); `onWrite` gets only the others. Whoever pushes changes takes the
   * bits from this bitmap. Without it, every WRITE goes to `onWrite`.
   */
  dirty?: ChunkBitmap;
  /**
   * Chunks being fetched or first written by whoever fills the cache, who
   * takes a chunk's bit (test-and-set) first. With `dirty`, a WRITE covering
   * whole chunks that are not present takes their bits and is stored natively
   * (`onStoredWhole` tells of it); if any is taken, the write goes to `onWrite`.
   */
  inFlight?: ChunkBitmap;
}

/** An NBD server the FUSE threads read from themselves (see `remoteReads`). */
export type FuseRemoteReads = NbdHandOff;

export interface FuseFileOptions extends FuseFileHandlers {
  /** An existing empty directory. A stale FUSE mount left there by a dead process is cleared. */
  mountPoint: string;
  size: number;
  /** Name of the one file in the mount (default "disk"). */
  fileName?: string;
  /** Default: true when there is no `onWrite`. */
  readOnly?: boolean;
  local?: FuseLocalCache;
  /**
   * READs of ranges not entirely present in `local` — up to 64 KiB; all
   * READs without `local` — are sent to this NBD server by the request
   * threads and answered from its replies, never reaching `onRead` (which still gets a read the connection
   * could not take, and every read once the connection failed). The bytes
   * are not stored: with `local`, `onRemoteRead` hears of each such read.
   * Only for a cache whose missing chunks hold nothing newer than the server.
   */
  remoteReads?: FuseRemoteReads;
  /** Request threads, each with its own cloned /dev/fuse fd (default 1; measured best on 2 cores). */
  threads?: number;
  /** Bypass the page cache (FOPEN_DIRECT_IO); disables mmap of the file. Default false. */
  directIo?: boolean;
  /** Permission bits of the file (default 0o600). */
  mode?: number;
  /** Readahead of the mount in KiB (default 1024); 0 keeps the kernel's. */
  readAheadKb?: number;
  /** Shown as the mount's source and type suffix (default "r3map"). */
  fsName?: string;
  /** Answer a request whose handler has not settled after this long with ETIMEDOUT (default: wait). */
  requestTimeoutMs?: number;
  /** Unmounts when aborted. */
  signal?: AbortSignal;
}

/** What a FuseFile's native threads answer themselves (see `FuseFile.setAccess`). */
export type FuseAccess = "serve" | "forward-writes" | "forward-all";

const FUSE_ACCESS: Record<FuseAccess, number> = { serve: 0, "forward-writes": 1, "forward-all": 2 };

export interface FuseFileStats {
  /** READs answered natively from the local cache. */
  nativeReads: number;
  /** READs handed to `onRead`. */
  forwardedReads: number;
  /** WRITEs handed to `onWrite`. */
  forwardedWrites: number;
  /** WRITEs stored natively in the local cache (`local.dirty`). */
  nativeWrites: number;
  /** READs answered by the request threads from the NBD server (`remoteReads`). */
  remoteReads: number;
}

const open = new Set<FuseFile>();
let exitHookInstalled = false;

function closeAllOnExit(): void {
  for (const file of open) file.closeSync();
}

/**
 * The mount point as /proc/self/mountinfo spells it, so a stale mount there is
 * recognised. The directory itself may be a dead mount (stat gives ENOTCONN),
 * so only its parent is resolved.
 */
function canonicalMountPoint(mountPoint: string): string {
  const absolute = path.resolve(mountPoint);
  try {
    return path.join(fs.realpathSync(path.dirname(absolute)), path.basename(absolute));
  } catch (error) {
    throw fromSystemError(error, `mount point ${mountPoint}`);
  }
}

function errnoNumber(error: unknown): number {
  const name = errnoOf(error) as keyof typeof osConstants.errno;
  return osConstants.errno[name] ?? osConstants.errno.EIO;
}

export class FuseFile {
  /** Path of the file: `<mountPoint>/<fileName>`. */
  readonly path: string;
  readonly mountPoint: string;
  readonly size: number;
  /** The mount's device number "major:minor" (its bdi and fusectl entry). */
  readonly device: string;
  readonly #native: NativeFuseServer;
  #closing: Promise<void> | undefined;

  readonly #closingController: AbortController;

  private constructor(
    native: NativeFuseServer,
    options: FuseFileOptions,
    mountPoint: string,
    fileName: string,
    device: string,
    closing: AbortController,
  ) {
    this.#native = native;
    this.#closingController = closing;
    this.mountPoint = mountPoint;
    this.size = options.size;
    this.path = path.join(mountPoint, fileName);
    this.device = device;
  }

  /** Mounts the file system; resolves once the kernel has initialised it. Needs root (CAP_SYS_ADMIN). */
  static async mount(options: FuseFileOptions): Promise<FuseFile> {
    checkPositiveInteger(options.size, "size");
    const fileName = options.fileName ?? "disk";
    if (fileName.includes("/") || fileName === "." || fileName === ".." || fileName === "") {
      throw new R3mapError("ERR_INVALID_ARGUMENT", `fileName must be a plain file name, got "${fileName}"`);
    }
    const mountPoint = canonicalMountPoint(options.mountPoint);
    const handlers: FuseFileHandlers = options;
    if (options.requestTimeoutMs !== undefined)
      checkPositiveInteger(options.requestTimeoutMs, "requestTimeoutMs");
    if (options.signal?.aborted) throw new R3mapError("ERR_ABORTED", "mount aborted before it started");
    const readOnly = options.readOnly ?? options.onWrite === undefined;
    const nativeOptions: NativeFuseOptions = {
      mountPoint,
      fileName,
      fsName: options.fsName ?? "r3map",
      size: options.size,
      mode: options.mode ?? 0o600,
      readOnly,
      directIo: options.directIo ?? false,
      forwardFlush: options.onFlush !== undefined,
      forwardFsync: options.onFsync !== undefined,
      threads: options.threads ?? 1,
      readAheadKb: options.readAheadKb ?? 1024,
      dispatch: (kind, channel, unique, offset, length, data) => {
        if (kind === FuseRequestKind.RemoteRead) handlers.onRemoteRead?.(offset, length);
        else if (kind === FuseRequestKind.StoredWhole) handlers.onStoredWhole?.(offset, length);
        else void serve(dispatcher, kind, channel, unique, offset, length, data);
      },
    };
    if (options.local !== undefined) nativeOptions.local = nativeLocal(options.local, options.size);
    const remote = options.remoteReads;
    if (remote !== undefined) {
      nativeOptions.remote = nativeHandOff(remote);
    }
    let native: NativeFuseServer;
    try {
      native = new (addon().FuseServer)(nativeOptions);
    } finally {
      // The server holds its own descriptor for the connection now (or failed to).
      remote?.socket.destroy();
    }
    const closing = new AbortController();
    // Every request in flight listens for closing; there may be hundreds (a library must not warn).
    setMaxListeners(0, closing.signal);
    const dispatcher: Dispatcher = {
      native,
      handlers,
      timeoutMs: options.requestTimeoutMs,
      closing: closing.signal,
    };
    let device: string;
    try {
      device = await native.mount();
    } catch (error) {
      native.closeSync();
      throw mapNativeError(error, `cannot mount FUSE at ${options.mountPoint}`);
    }
    const file = new FuseFile(native, options, mountPoint, fileName, device, closing);
    if (options.signal?.aborted) {
      await file.close();
      throw new R3mapError("ERR_ABORTED", `mounting ${mountPoint} was aborted`);
    }
    options.signal?.addEventListener("abort", () => void file.close(), { once: true });
    open.add(file);
    if (!exitHookInstalled) {
      process.on("exit", closeAllOnExit);
      exitHookInstalled = true;
    }
    return file;
  }

  stats(): FuseFileStats {
    const { nativeReads, forwardedReads, forwardedWrites, nativeWrites, remoteReads } = this.#native.stats();
    return { nativeReads, forwardedReads, forwardedWrites, nativeWrites, remoteReads };
  }

  /**
   * What the request threads answer themselves: `"serve"` (default) all they
   * can; `"forward-writes"` reads only — every WRITE reaches `onWrite`;
   * `"forward-all"` nothing — every READ and WRITE reaches the handlers,
   * which may hold them (pages the kernel cached are still served by the
   * kernel: `invalidate` them). Takes effect for requests that arrive after.
   */
  setAccess(access: FuseAccess): void {
    if (this.#closing) return;
    this.#native.setAccess(FUSE_ACCESS[access]);
  }

  /**
   * Drops the kernel's cached pages of `[offset, offset + length)` (default:
   * the whole file), so the next read of that range reaches the handlers or
   * the local cache again — after the data behind it changed (a chunk marked
   * remote again). Reads are otherwise served from the page cache once read.
   */
  async invalidate(offset = 0, length = this.size - offset): Promise<void> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new R3mapError("ERR_INVALID_ARGUMENT", `cannot invalidate [${offset}, ${offset + length})`);
    }
    if (length === 0 || this.#closing) return;
    try {
      await this.#native.invalidate(offset, length);
    } catch (error) {
      throw mapNativeError(error, `cannot invalidate the page cache of ${this.path}`);
    }
  }

  /** Lets the process exit while mounted (it is then unmounted at exit). */
  unref(): this {
    this.#native.unref();
    return this;
  }

  ref(): this {
    this.#native.ref();
    return this;
  }

  /**
   * Unmounts and stops the request threads. If the file is still in use (a
   * loop device, an open descriptor), the mount is detached and the connection
   * aborted: later I/O on it fails with ENOTCONN. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#native.close().finally(() => {
      open.delete(this);
      this.#closingController.abort(
        new R3mapError("ERR_CLOSED", "the FUSE file was closed", { errno: "ENOTCONN" }),
      );
    });
    return this.#closing;
  }

  /** Synchronous teardown for process exit: aborts outstanding requests. */
  closeSync(): void {
    open.delete(this);
    this.#native.closeSync();
    this.#closingController.abort(
      new R3mapError("ERR_CLOSED", "the FUSE file was closed", { errno: "ENOTCONN" }),
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Handlers that forward a FUSE file to a Backend (reads, writes, fsync → sync). */
export function backendHandlers(
  backend: Backend,
): Required<Pick<FuseFileHandlers, "onRead" | "onFsync">> & Pick<FuseFileHandlers, "onWrite"> {
  const handlers = {
    onRead: async (offset: number, length: number) => {
      const buffer = new Uint8Array(length);
      await backend.readAt(buffer, offset);
      return buffer;
    },
    onFsync: () => backend.sync(),
  };
  if (backend.readOnly) return handlers;
  return { ...handlers, onWrite: (offset: number, data: Uint8Array) => backend.writeAt(data, offset) };
}

interface Dispatcher {
  native: NativeFuseServer;
  handlers: FuseFileHandlers;
  timeoutMs: number | undefined;
  /** Aborted when the file closes. */
  closing: AbortSignal;
}

/** Rejects when `signal` aborts (a request timeout or close), whatever `work` does. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortReason(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function abortReason(signal: AbortSignal): R3mapError {
  const reason: unknown = signal.reason;
  if (reason instanceof R3mapError) return reason;
  if (reason instanceof DOMException && reason.name === "TimeoutError") {
    return new R3mapError("ERR_TIMEOUT", "the FUSE request handler did not settle in time", {
      errno: "ETIMEDOUT",
    });
  }
  return new R3mapError("ERR_CLOSED", "the FUSE file was closed", { errno: "ENOTCONN" });
}

async function runHandler(
  handlers: FuseFileHandlers,
  kind: FuseRequestKind,
  offset: number,
  length: number,
  data: Buffer | undefined,
  signal: AbortSignal,
): Promise<Uint8Array | undefined> {
  switch (kind) {
    case FuseRequestKind.Read: {
      if (handlers.onRead === undefined) throw new R3mapError("ERR_NOT_SUPPORTED", "no onRead handler");
      const bytes = await handlers.onRead(offset, length, signal);
      if (!(bytes instanceof Uint8Array)) return undefined;
      return bytes.byteLength > length ? bytes.subarray(0, length) : bytes;
    }
    case FuseRequestKind.Write:
      if (handlers.onWrite === undefined) throw new R3mapError("ERR_READ_ONLY", "no onWrite handler");
      await handlers.onWrite(offset, data ?? new Uint8Array(0), signal);
      return undefined;
    case FuseRequestKind.Flush:
      await handlers.onFlush?.(signal);
      return undefined;
    case FuseRequestKind.Fsync:
      await handlers.onFsync?.(signal);
      return undefined;
  }
}

async function serve(
  d: Dispatcher,
  kind: FuseRequestKind,
  channel: number,
  unique: number,
  offset: number,
  length: number,
  data: Buffer | undefined,
): Promise<void> {
  const signal =
    d.timeoutMs === undefined ? d.closing : AbortSignal.any([d.closing, AbortSignal.timeout(d.timeoutMs)]);
  try {
    const bytes = await untilAborted(runHandler(d.handlers, kind, offset, length, data, signal), signal);
    if (kind === FuseRequestKind.Read) d.native.replyRead(channel, unique, 0, bytes, offset, length);
    else if (kind === FuseRequestKind.Write) d.native.replyWrite(channel, unique, 0, length);
    else d.native.replyStatus(channel, unique, 0);
  } catch (error) {
    // Every request gets an answer: the handler's failure becomes its errno.
    const errno = errnoNumber(error);
    if (kind === FuseRequestKind.Write) d.native.replyWrite(channel, unique, errno, 0);
    else d.native.replyStatus(channel, unique, errno);
  }
}

function nativeLocal(local: FuseLocalCache, size: number): NonNullable<NativeFuseOptions["local"]> {
  checkPositiveInteger(local.chunkSize, "local.chunkSize");
  const out: NonNullable<NativeFuseOptions["local"]> = { chunkSize: local.chunkSize };
  if (local.presence !== undefined)
    out.bitmap = sharedBitmap(local.presence, "local.presence", size, local.chunkSize);
  if (local.segments !== undefined) {
    const segmentSize = local.segmentSize ?? local.segments[0]?.byteLength ?? 0;
    const total = local.segments.reduce((sum, s) => sum + s.byteLength, 0);
    // One reply (≤ 1 MiB) gathers at most 7 segments: keep them ≥ 256 KiB unless there is only one.
    const tooSmall = local.segments.length > 1 && segmentSize < 256 * 1024;
    if (tooSmall || total < size || local.segments.slice(0, -1).some((s) => s.byteLength !== segmentSize)) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `local.segments must be consecutive segments of one size (≥ 256 KiB) covering ${size} bytes`,
      );
    }
    out.segments = local.segments;
    out.segmentSize = segmentSize;
    out.hugePages = local.hugePages ?? true;
  } else if (local.fd !== undefined) {
    out.fd = local.fd;
  } else {
    throw new R3mapError("ERR_INVALID_ARGUMENT", "local needs segments or fd");
  }
  if (local.dirty !== undefined) out.dirty = sharedBitmap(local.dirty, "local.dirty", size, local.chunkSize);
  if (local.inFlight !== undefined) {
    out.inFlight = sharedBitmap(local.inFlight, "local.inFlight", size, local.chunkSize);
  }
  return out;
}

/** The words of a bitmap native threads will use: one bit per chunk of the file, in shared memory. */
function sharedBitmap(bitmap: ChunkBitmap, name: string, size: number, chunkSize: number): Int32Array {
  if (bitmap.count < Math.ceil(size / chunkSize)) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `${name} has fewer bits than the file has chunks`);
  }
  if (!(bitmap.buffer instanceof SharedArrayBuffer)) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `${name} must live in a SharedArrayBuffer`);
  }
  return bitmap.words;
}
