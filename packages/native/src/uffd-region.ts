/**
 * A userfaultfd region: memory whose pages are filled on first touch, a whole
 * chunk at a time, by a native handler thread. Chunks marked present in the
 * presence bitmap are copied from the local cache natively; the others are
 * handed to `onMiss` (JavaScript), which stores the chunk in the cache and
 * resolves.
 *
 * Deadlock rule: a thread blocked on a fault here waits for `onMiss`, which
 * runs on the event loop of the thread that created the region. That thread
 * must never touch the region itself (use a worker thread or another process
 * for one of the two roles).
 */
import { constants } from "node:buffer";
import { writeSync } from "node:fs";
import { type ChunkBitmap, type NbdHandOff, R3mapError } from "@r3map/core";
import { chunksOfRanges, type DirtyRange, dirtyRangesFromPairs } from "./dirty-ranges.js";
import { nativeHandOff } from "./nbd-hand-off.js";
import {
  callNative,
  type NativeUffdRegion,
  type NativeUffdRegionOptions,
  type UffdStats,
  uffdNative,
} from "./uffd-native.js";

export type { UffdStats } from "./uffd-native.js";

const { MAX_LENGTH } = constants;
/** Set on the chunk number of a native fetch's notice (see uffd_region.cc). */
const LANDED_FLAG = 0x80000000;

/** Where present chunks are read from. */
export type UffdCache =
  /** Memory: segments laid end to end (e.g. `MemoryBackend.segments`). */
  | { segments: readonly Uint8Array[] }
  /** A file or block device, chunk i at `offset + i * chunkSize` (e.g. a `FileBackend`'s fd). */
  | { fd: number; offset?: number };

export interface UffdRegionOptions {
  /** Bytes; a multiple of the page size. */
  size: number;
  /** Bytes resolved per fault; a multiple of the page size. Larger chunks mean fewer faults (≥ 64 KiB recommended). */
  chunkSize: number;
  /**
   * `anonymous` (default): private memory. `memfd`: shared memory with an fd
   * (`region.memfd`) another process can map.
   */
  memory?: "anonymous" | "memfd";
  /**
   * memfd only: the memfd itself is the local cache. Present chunks are mapped
   * with UFFDIO_CONTINUE; `onMiss` puts data in with `region.store()`.
   */
  cacheInMemfd?: boolean;
  /** Chunk presence, shared with the engine. Without it every first touch is a miss (or read from `cache` if there is no onMiss). */
  presence?: ChunkBitmap;
  /**
   * Chunks the engine is fetching or first writing right now, shared with it
   * (`SyncedStageOptions.inFlight`). Needed by `serveMissesFrom`: a native
   * fetch claims a chunk's bit first, and leaves claimed chunks to the engine.
   */
  inFlight?: ChunkBitmap;
  /** With `serveMissesFrom`: a chunk was fetched natively, stored, marked present and mapped. */
  onLanded?: (chunk: number) => void;
  cache?: UffdCache;
  /**
   * Called on this thread for a chunk that is not present. Store the chunk in
   * the cache (and set its presence bit), then resolve. Without a cache, call
   * `region.fillFrom(chunk, bytes)` instead. A rejection or throw poisons the
   * chunk: the thread that touched it gets SIGBUS.
   */
  onMiss?: (chunk: number, signal: AbortSignal) => Promise<void> | void;
  /** Track writes (asynchronous write-protect); read them with `scanDirty()`. */
  dirtyTracking?: boolean;
  /** Aborting closes the region. */
  signal?: AbortSignal;
}

export interface UffdCapabilities {
  /** Regions can be created by this process. */
  available: boolean;
  /** Why not, when unavailable. */
  reason?: string;
  /** memory: "memfd" (UFFD_FEATURE_MISSING_SHMEM). */
  memfd: boolean;
  /** cacheInMemfd (UFFD_FEATURE_MINOR_SHMEM). */
  cacheInMemfd: boolean;
  /** A failed miss gives SIGBUS (UFFD_FEATURE_POISON, Linux 6.6+); regions need it. */
  failedMissesSigbus: boolean;
  /** dirtyTracking (UFFD_FEATURE_WP_ASYNC + WP_UNPOPULATED, Linux 6.7+). */
  dirtyTracking: boolean;
}

/** Serve a region that another process created with `UffdRegion.createUnserved`. */
export interface UffdAdoptOptions
  extends Pick<UffdRegionOptions, "presence" | "cache" | "onMiss" | "signal"> {
  /** What the other process reported: `region.describe()` there. */
  remote: UffdRemoteDescription;
}

/** Enough for another process to serve a region (plain data: send it as JSON). */
export interface UffdRemoteDescription {
  pid: number;
  fd: number;
  address: number;
  size: number;
  chunkSize: number;
}

export class UffdRegion {
  readonly #native: NativeUffdRegion;
  readonly #abort = new AbortController();
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = (): void => this.close();
  #buffer: Buffer | undefined;
  #closed = false;
  #lastMissError: unknown;

  private constructor(
    options: NativeUffdRegionOptions,
    onMiss: UffdRegionOptions["onMiss"],
    signal?: AbortSignal,
    onLanded?: (chunk: number) => void,
  ) {
    if (signal?.aborted) throw new R3mapError("ERR_ABORTED", "the region was aborted before it was created");
    const handler = onMiss;
    const nativeOptions =
      handler === undefined
        ? options
        : {
            ...options,
            // Native fetches' notices come through the same call, flagged.
            onMiss: (chunk: number) =>
              chunk >= LANDED_FLAG ? onLanded?.(chunk - LANDED_FLAG) : this.#miss(handler, chunk),
          };
    this.#native = callNative(() => new (uffdNative().UffdRegion)(nativeOptions));
    this.#signal = signal;
    signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** Maps and registers a new region and starts its handler thread. */
  static create(options: UffdRegionOptions): UffdRegion {
    const memfd = options.memory === "memfd";
    if (options.cacheInMemfd && !memfd) {
      throw new R3mapError("ERR_INVALID_ARGUMENT", "cacheInMemfd needs memory: 'memfd'");
    }
    return new UffdRegion(
      {
        size: options.size,
        chunkSize: options.chunkSize,
        memfd,
        continue: options.cacheInMemfd === true,
        dirty: options.dirtyTracking === true,
        ...cacheOptions(options.presence, options.cache),
        ...(options.inFlight ? { inFlight: options.inFlight.words } : {}),
      },
      options.onMiss,
      options.signal,
      options.onLanded,
    );
  }

  /**
   * Maps and registers a region whose faults this process does not serve:
   * send `describe()` to another process, which serves it with
   * `UffdRegion.adopt`. Touching it before that blocks.
   */
  static createUnserved(options: Pick<UffdRegionOptions, "size" | "chunkSize" | "memory">): UffdRegion {
    return new UffdRegion(
      { size: options.size, chunkSize: options.chunkSize, memfd: options.memory === "memfd", serve: false },
      undefined,
    );
  }

  /** Serves a region of another process (needs ptrace rights over it: root, or its parent). */
  static adopt(options: UffdAdoptOptions): UffdRegion {
    const { remote } = options;
    return new UffdRegion(
      {
        size: remote.size,
        chunkSize: remote.chunkSize,
        adopt: { pid: remote.pid, fd: remote.fd, address: remote.address },
        ...cacheOptions(options.presence, options.cache),
      },
      options.onMiss,
      options.signal,
    );
  }

  /**
   * A view of a region created on another thread of this process, by its
   * `id`. It stays valid after that region closes (then as plain memory) until
   * it is garbage-collected.
   */
  static attach(id: number, offset?: number, length?: number): Buffer {
    const native = uffdNative();
    const buffer = callNative(() =>
      offset === undefined ? native.uffdAttachView(id) : native.uffdAttachView(id, offset, length ?? 0),
    );
    return Buffer.from(buffer);
  }

  /** Whether this process can create regions, and what the kernel offers (raw UFFD_FEATURE_* bits). */
  static features(): { available: boolean; errno?: string; features: number; names: string } {
    return uffdNative().uffdFeatures();
  }

  /** What regions can do here, for feature detection (e.g. to pick a device or skip). */
  static capabilities(): UffdCapabilities {
    const { available, errno, features } = UffdRegion.features();
    const has = (bit: number): boolean => available && (features & (1 << bit)) !== 0;
    const capabilities: UffdCapabilities = {
      available,
      memfd: has(5),
      cacheInMemfd: has(10),
      failedMissesSigbus: has(14),
      dirtyTracking: has(15) && has(13),
    };
    if (!available) {
      capabilities.reason =
        errno === "ENOSYS"
          ? "this kernel has no userfaultfd"
          : `userfaultfd is not allowed (${errno}): run as root, or grant access to /dev/userfaultfd`;
    }
    return capabilities;
  }

  get id(): number {
    return this.#native.id;
  }
  get address(): number {
    return this.#native.address;
  }
  get size(): number {
    return this.#native.size;
  }
  get chunkSize(): number {
    return this.#native.chunkSize;
  }
  get chunks(): number {
    return this.#native.chunks;
  }
  /** The memfd (memory: "memfd"), -1 otherwise. Closed by close(). */
  get memfd(): number {
    return this.#native.memfd;
  }
  get closed(): boolean {
    return this.#closed;
  }
  /** Why the last miss failed, if one did. */
  get lastMissError(): unknown {
    return this.#lastMissError;
  }

  /** The region as a Buffer (one view, created on first use). Detached by close(). At most 4 GiB: see view(). */
  get buffer(): Buffer {
    this.#assertOpen();
    if (this.size > MAX_LENGTH) {
      throw new R3mapError(
        "ERR_OUT_OF_RANGE",
        `the region is larger than a Buffer can be: use view(offset, length) for parts`,
      );
    }
    this.#buffer ??= Buffer.from(callNative(() => this.#native.view()));
    return this.#buffer;
  }

  /** A Buffer over part of the region (for regions larger than one Buffer). Detached by close(). */
  view(offset: number, length: number): Buffer {
    this.#assertOpen();
    return Buffer.from(callNative(() => this.#native.view(offset, length)));
  }

  /** For `createUnserved` regions: what the serving process needs. */
  describe(): UffdRemoteDescription {
    return {
      pid: process.pid,
      fd: this.#native.uffd,
      address: this.address,
      size: this.size,
      chunkSize: this.chunkSize,
    };
  }

  /** Maps a chunk from the cache if it is not mapped yet (background pull). True if this call mapped it. */
  fill(chunk: number): boolean {
    this.#assertOpen();
    return callNative(() => this.#native.fill(chunk));
  }

  /** Maps a chunk from `bytes` (at least one chunk long) if it is not mapped yet. */
  fillFrom(chunk: number, bytes: Uint8Array): boolean {
    this.#assertOpen();
    return callNative(() => this.#native.fillFrom(chunk, bytes));
  }

  /**
   * Maps the chunks in [first, first + count) that are present in the cache
   * and not mapped yet, so that touching them takes no fault at all —
   * consecutive ones with one call into the kernel. Returns how many it
   * mapped. For chunks that became present behind the region's back (a
   * background pull): a fault, even one resolved natively, costs a round
   * trip through the handler thread and, on its way back, the process's
   * memory-map lock.
   */
  mapPresent(first: number, count: number): number {
    this.#assertOpen();
    return callNative(() => this.#native.mapPresent(first, count));
  }

  /**
   * From now on a miss on a chunk nobody is fetching (its `inFlight` bit
   * clear) is fetched by native code from an NBD server over the handed-off
   * connection, stored in the memfd, marked present and mapped, with no
   * JavaScript on the way; `onLanded` hears of each afterwards. A chunk
   * whose bit is set, and every miss once the connection failed (closed,
   * reset, a bad reply, silence past the timeout) or was refused by the
   * server, goes to `onMiss` as before. Needs `cacheInMemfd`, `presence`,
   * `inFlight` and `onMiss`; the region takes the socket over.
   */
  serveMissesFrom(remote: NbdHandOff): void {
    this.#assertOpen();
    try {
      callNative(() => this.#native.serveMissesFrom(nativeHandOff(remote)));
    } finally {
      remote.socket.destroy();
    }
  }

  /**
   * Drops a chunk from the region so that the next touch faults again and is
   * resolved anew: clear its presence bit first (e.g. migration marked it
   * remote). In a memfd region this also drops it from the memfd. Not for
   * adopted regions.
   */
  evict(chunk: number): void {
    this.#assertOpen();
    callNative(() => this.#native.evict(chunk));
  }

  /**
   * Gated, every fault goes to `onMiss` — present chunk or not — and nothing
   * is fetched natively, so JavaScript decides when a touching thread may go
   * on (a migration's leecher holds faults until its data is final). Pages
   * already mapped stay mapped: do not `mapPresent` while gated.
   */
  setGated(gated: boolean): void {
    this.#assertOpen();
    callNative(() => this.#native.setGated(gated));
  }

  /** cacheInMemfd: writes a chunk's bytes into the memfd (the cache); set its presence bit afterwards. */
  store(chunk: number, bytes: Uint8Array): void {
    this.#assertOpen();
    if (this.memfd < 0)
      throw new R3mapError("ERR_NOT_SUPPORTED", "store() needs a memfd region; use the cache you passed");
    const length = Math.min(this.chunkSize, this.size - chunk * this.chunkSize);
    if (bytes.length < length) throw new R3mapError("ERR_INVALID_ARGUMENT", `store needs ${length} bytes`);
    let done = 0;
    while (done < length)
      done += writeSync(this.memfd, bytes, done, length - done, chunk * this.chunkSize + done);
  }

  stats(): UffdStats {
    return this.#native.stats();
  }

  /**
   * Written ranges since the last scan (or since creation), re-protected in
   * the same call. Needs `dirtyTracking: true`.
   */
  scanDirty(): DirtyRange[] {
    this.#assertOpen();
    return dirtyRangesFromPairs(
      callNative(() => uffdNative().pagemapScanWritten(this.address, this.size, true)),
    );
  }

  /** Like scanDirty(), as chunk indexes. */
  scanDirtyChunks(): number[] {
    return chunksOfRanges(this.scanDirty(), this.chunkSize);
  }

  /**
   * Stops the handler, wakes any thread blocked on a fault (it then sees plain
   * memory), detaches this thread's views and unmaps. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#abort.abort(new R3mapError("ERR_CLOSED", "the region was closed"));
    this.#native.close();
    this.#buffer = undefined;
  }

  /** Lets this thread's event loop exit although the region still serves misses (default: it keeps it alive until close()). */
  unref(): this {
    this.#native.unref();
    return this;
  }

  ref(): this {
    this.#native.ref();
    return this;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #miss(onMiss: NonNullable<UffdRegionOptions["onMiss"]>, chunk: number): void {
    if (this.#closed) return; // a call queued before close(): nobody waits for it any more
    let pending: Promise<void>;
    try {
      pending = Promise.resolve(onMiss(chunk, this.#abort.signal));
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending.then(
      () => this.#native.complete(chunk, true),
      (error: unknown) => {
        this.#lastMissError = error;
        this.#native.complete(chunk, false);
      },
    );
  }

  #assertOpen(): void {
    if (this.#closed) throw new R3mapError("ERR_CLOSED", "the region is closed; create a new one");
  }
}

function cacheOptions(
  presence: ChunkBitmap | undefined,
  cache: UffdCache | undefined,
): Pick<NativeUffdRegionOptions, "presence" | "segments" | "cacheFd" | "cacheOffset"> {
  const out: Pick<NativeUffdRegionOptions, "presence" | "segments" | "cacheFd" | "cacheOffset"> = {};
  if (presence !== undefined) out.presence = presence.words;
  if (cache !== undefined && "segments" in cache) out.segments = cache.segments;
  if (cache !== undefined && "fd" in cache) {
    out.cacheFd = cache.fd;
    out.cacheOffset = cache.offset ?? 0;
  }
  return out;
}
