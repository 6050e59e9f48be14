import {
  ArbitraryStage,
  applyFilters,
  type Backend,
  ChunkBitmap,
  type ChunkOrigin,
  FileBackend,
  ManagedPipeline,
  MemoryBackend,
  openBackend,
  type Progress,
  R3mapError,
  schemeTraits,
  TrackingStage,
  TypedEmitter,
} from "@r3map/core";
import { keepBackendFromChildren, type Population, populateInBackground } from "@r3map/native";
import { type Access, AccessGate } from "./access-gate.js";
import { CacheStateFile } from "./cache-state.js";
import { chunkSizeOf, type ManagedDescription, type MountDescription } from "./description.js";
import { importSchemePackages } from "./schemes.js";
import { type WarmStartResult, warmStart } from "./warm-start.js";

export interface MountEngineEvents {
  progress: [Progress];
  /** A chunk became local: fetched (demand or pull) or written whole. */
  "chunk-local": [chunk: number, origin: ChunkOrigin];
  /** A background pull or push failed; data is kept and pushes are retried. */
  error: [unknown];
}

/** Where native code may read present chunks from without calling JavaScript. */
export type NativeCache = { segments: readonly Uint8Array[] } | { fd: number };

export interface EngineParts {
  remote: Backend;
  /** Managed only: the local cache (opened from `managed.local`, or given). */
  local?: Backend;
  /** Managed only: the presence bitmap to fill (shared with a device created before the engine). */
  presence?: ChunkBitmap;
  /** Managed only: a second connection to the remote for the background pull. */
  pullRemote?: Backend;
  /** Managed only: the in-flight bitmap to use (shared with a device created before the engine). */
  inFlight?: ChunkBitmap;
  /** Managed only: the cache's persisted chunk state (`managed.state`), whose bitmaps the pipeline uses. */
  state?: CacheStateFile;
  /** Managed only: what a warm start (`managed.warm`) found; its chunks are set in `presence`. */
  warm?: WarmStartResult;
}

/** A local cache a device brings itself (a slice: its memfd), with the bitmaps it shares with native code. */
export interface EngineCache {
  local: Backend;
  presence?: ChunkBitmap;
  inFlight?: ChunkBitmap;
}

/** Makes the local cache once the remote's size is known. */
export type LocalFactory = (size: number) => EngineCache;

/**
 * The JavaScript side of a mount: the remote, and for managed mounts the local
 * cache, puller and pusher. Devices call `backend` for what they cannot serve
 * natively. Built from a `MountDescription` (URIs) or from Backend objects.
 */
export class MountEngine extends TypedEmitter<MountEngineEvents> {
  readonly backend: Backend;
  readonly pipeline: ManagedPipeline | undefined;
  readonly chunkSize: number;
  readonly remote: Backend;
  /** A managed mount whose background pull runs. */
  readonly pulls: boolean;
  /** What the warm start found (`managed.warm`), or undefined without one. */
  readonly warmStart: WarmStartResult | undefined;
  readonly #description: MountDescription;
  #closing: Promise<void> | undefined;
  #population: Population | undefined;
  #written: ChunkBitmap | undefined;
  #inFlight: ChunkBitmap | undefined;
  #state: CacheStateFile | undefined;
  /** Where writes the engine does not see are found (see `addWriteSource`). */
  readonly #writeSources: (() => Iterable<number>)[] = [];
  /** Records the chunks written from a point in time on (a migration's seeder). */
  readonly #tracking: TrackingStage;
  readonly #gate: AccessGate;

  private constructor(description: MountDescription, parts: EngineParts) {
    super();
    this.#description = description;
    this.chunkSize = chunkSizeOf(description);
    this.remote = parts.remote;
    this.warmStart = parts.warm;
    const managed = description.managed;
    this.pulls = managed !== undefined && managed.pull !== false;
    if (managed) {
      if (!parts.local) throw new R3mapError("ERR_INVALID_ARGUMENT", "a managed mount needs a local cache");
      // A child process spawned by this one would otherwise make every cache page copy-on-write here.
      if (parts.local) keepBackendFromChildren(parts.local);
      // Native code may store writes to present chunks in a memory or file cache itself, marking them here;
      // every push and a migration's tracking take the marks (`#takeWrites`).
      const chunks = Math.ceil(parts.remote.size / this.chunkSize);
      const state = parts.state?.state;
      this.#state = parts.state;
      if (isNativeCache(parts.local)) this.#written = state?.written ?? new ChunkBitmap(chunks);
      // Native code reading misses from the remote itself leaves chunks already on their way to the engine.
      if (isNativeCache(parts.local)) this.#inFlight = parts.inFlight ?? new ChunkBitmap(chunks);
      this.pipeline = new ManagedPipeline({
        remote: parts.remote,
        local: parts.local,
        chunkSize: this.chunkSize,
        ...(parts.presence ? { presence: parts.presence } : {}),
        ...(state ? { presence: state.presence, pending: state.pending } : {}),
        ...(this.#inFlight ? { inFlight: this.#inFlight } : {}),
        ...(parts.pullRemote ? { pullRemote: parts.pullRemote } : {}),
        collectWrites: { take: () => this.#takeWrites(), pending: () => this.#written?.cardinality() ?? 0 },
        pull: pullOptions(managed),
        ...(managed.pull !== false && managed.pull?.untilFinalized ? { awaitFinalize: true } : {}),
        push: pushOptions(managed),
      });
      this.pipeline.on("progress", (progress) => this.emit("progress", progress));
      this.pipeline.on("chunk-local", (chunk, origin) => this.emit("chunk-local", chunk, origin));
      this.pipeline.on("error", (error) => this.emit("error", error));
    } else {
      this.pipeline = undefined;
    }
    // A direct mount passes a partial chunk through as what it is where the remote takes byte ranges
    // (NBD, Connect, files); stores keyed by chunk get whole chunks (read-modify-write here).
    const direct = parts.remote.byteRanges ? parts.remote : new ArbitraryStage(parts.remote, this.chunkSize);
    this.#tracking = new TrackingStage(this.pipeline?.backend ?? direct, this.chunkSize);
    this.#gate = new AccessGate(this.#tracking);
    this.backend = this.#gate;
  }

  /**
   * Opens the backends a description names. `given.remote` replaces the
   * remote URI with a Backend object (same-thread use); `makeLocal` overrides
   * `managed.local` (a slice passes its memfd).
   */
  static async open(
    description: MountDescription,
    makeLocal?: LocalFactory,
    given: { remote?: Backend } = {},
  ): Promise<MountEngine> {
    await importSchemePackages(description.schemes);
    const remote = await openRemote(description, given.remote);
    let pullRemote: Backend | undefined;
    try {
      if (!description.managed) return new MountEngine(description, { remote });
      // The background pull gets its own connection, so a reader's miss never queues behind dozens of
      // pulled chunks (the first-chunk latency of a cold mount depends on it). Only for remotes whose
      // scheme says a second open is a second connection to the same resource: a Backend object cannot
      // be opened twice, a second `memory:` would be another resource, and local files gain nothing.
      if (description.managed.pull !== false && !given.remote && schemeTraits(description.remote).network) {
        pullRemote = await openRemote(description);
      }
      const pulling = pullRemote ? { pullRemote } : {};
      if (makeLocal) {
        if (description.managed.state) {
          throw new R3mapError(
            "ERR_NOT_SUPPORTED",
            "managed.state needs a file cache; this device brings its own memory",
          );
        }
        return new MountEngine(description, { remote, ...pulling, ...makeLocal(remote.size) });
      }
      const local = await openBackend(description.managed.local ?? `memory:?size=${remote.size}`);
      let state: CacheStateFile | undefined;
      try {
        const statePath = description.managed.state;
        if (statePath) state = CacheStateFile.open(statePath, local, remote.size, chunkSizeOf(description));
        const warm = await warmPresence(description, remote, local, state);
        return new MountEngine(description, {
          remote,
          local,
          ...pulling,
          ...(state ? { state } : {}),
          ...(warm ? { warm: warm.result, ...(state ? {} : { presence: warm.presence }) } : {}),
        });
      } catch (error) {
        await local.close().catch(() => {});
        throw error;
      }
    } catch (error) {
      await remote.close().catch(() => {});
      await pullRemote?.close().catch(() => {});
      throw error;
    }
  }

  get size(): number {
    return this.remote.size;
  }

  /** A device's native code wrote this range whole into the cache, chunks that were not local before. */
  storedNatively(offset: number, length: number): void {
    const chunks = this.#chunksOf(offset, length);
    if (chunks) this.pipeline?.storedNatively(...chunks);
  }

  /**
   * A reader got these bytes straight from the remote, bypassing the cache
   * (a device's native code asked the server itself): the pull fetches their
   * chunks next, as after a miss.
   */
  readFromRemote(offset: number, length: number): void {
    const chunks = this.#chunksOf(offset, length);
    if (chunks) this.pipeline?.readFromRemote(...chunks);
  }

  /** The first and last chunk a byte range touches (none for an empty range). */
  #chunksOf(offset: number, length: number): [first: number, last: number] | undefined {
    if (length <= 0) return undefined;
    const last = Math.min(this.size - 1, offset + length - 1);
    return [Math.floor(offset / this.chunkSize), Math.floor(last / this.chunkSize)];
  }

  /**
   * For a managed mount whose cache native code can use: the presence bitmap,
   * where the bytes are, (when changes are pushed) the bitmap in which native
   * code marks the chunks it wrote, which every push takes, and the chunks
   * being fetched or first written right now.
   */
  nativeCache():
    | {
        presence: NonNullable<ManagedPipeline["presence"]>;
        cache: NativeCache;
        written?: ChunkBitmap;
        inFlight: ChunkBitmap;
      }
    | undefined {
    const pipeline = this.pipeline;
    const inFlight = this.#inFlight;
    if (!pipeline || !inFlight) return undefined;
    const local = pipeline.synced.local;
    const written = this.#written ? { written: this.#written } : {};
    if (local instanceof MemoryBackend)
      return { presence: pipeline.presence, cache: { segments: local.segments }, inFlight, ...written };
    if (local instanceof FileBackend)
      return { presence: pipeline.presence, cache: { fd: local.fd }, inFlight, ...written };
    return undefined;
  }

  /**
   * A reader is blocked on `chunk` outside the engine's backend (a slice's
   * page fault): fetches it over the demand connection if it is not local.
   */
  async fetchForReader(chunk: number): Promise<void> {
    await this.#gate.whileLocked();
    await this.#managed().synced.ensureLocalForReader(chunk);
  }

  /** Native code fetched `chunk`, stored it and marked it present: reported as a demand fetch. */
  landedNatively(chunk: number): void {
    this.pipeline?.synced.landedNatively(chunk);
  }

  /**
   * Adds a place where writes the engine does not see are found (a slice's
   * memory: a scan of its dirty pages). Every push first collects them.
   */
  addWriteSource(source: () => Iterable<number>): void {
    this.#writeSources.push(source);
  }

  /**
   * Chunks changed elsewhere: a managed mount forgets its local copies
   * (their next access fetches them again; local changes not yet pushed are
   * dropped). The device drops the kernel's copies (`Device.invalidate`).
   */
  markRemote(chunks: readonly number[]): void {
    this.pipeline?.markRemote(chunks);
  }

  /**
   * Takes the chunks written where the engine's stages did not see it —
   * native code's `written` bitmap, the write sources — and records them for
   * tracking. Whoever calls this hands them on: a push pushes them.
   */
  #takeWrites(): number[] {
    const chunks: number[] = [];
    const take = (chunk: number) => chunks.push(chunk);
    // With a persisted state, the bits reach its pending record before they leave `written`: a process
    // killed in between loses none.
    const pending = this.#state?.state.pending;
    if (pending) this.#written?.moveAllTo(pending, take);
    else this.#written?.takeAll(take);
    for (const source of this.#writeSources) for (const chunk of source()) chunks.push(chunk);
    this.#tracking.recordChunks(chunks);
    return chunks;
  }

  /**
   * A migration's last round (a pull `untilFinalized`): `changed` chunks —
   * changed on the remote since the pull began — are marked remote and
   * pulled first, then the pull finishes.
   */
  finalizePull(changed: readonly number[]): void {
    this.#managed().finalize(changed);
  }

  /** Resolves once every chunk is local (a managed mount that pulls). */
  pulled(): Promise<void> {
    return this.#managed().pulled();
  }

  /** The chunks present in a managed mount's cache (none for a direct one). */
  presentChunks(): number[] {
    const present: number[] = [];
    const presence = this.pipeline?.presence;
    if (presence)
      for (let chunk = 0; chunk < presence.count; chunk++) if (presence.has(chunk)) present.push(chunk);
    return present;
  }

  /** Takes the writes made out of sight now (handing them to the pusher) rather than at the next push. */
  #collectNow(): void {
    const chunks = this.#takeWrites();
    const pusher = this.pipeline?.pusher;
    if (pusher) for (const chunk of chunks) pusher.markDirty(chunk);
  }

  /**
   * Writes are refused: the remote is read-only and writes would reach it (a
   * direct mount, or a managed one that pushes). A managed mount that keeps
   * its writes local takes them whatever the remote is.
   */
  get readOnly(): boolean {
    const pushes = this.pipeline === undefined || this.pipeline.pusher !== undefined;
    return pushes && (this.remote.readOnly ?? false);
  }

  /** Starts recording every chunk written from now on, whichever way the write arrives. */
  trackWrites(): void {
    // Writes made before now are handed on untracked.
    this.#collectNow();
    this.#tracking.track();
  }

  /** The chunks written since `trackWrites()` or the previous call; tracking goes on. */
  takeTrackedWrites(): number[] {
    this.#collectNow();
    return this.#tracking.takeDirty();
  }

  /** The chunks written since the previous `takeTrackedWrites()`; tracking stops. */
  stopTracking(): number[] {
    this.#collectNow();
    return this.#tracking.stopTracking();
  }

  get tracking(): boolean {
    return this.#tracking.tracking;
  }

  /** Who may use the engine (see `Access`); resolves once requests already inside have finished. */
  setAccess(access: Access): Promise<void> {
    return this.#gate.set(access);
  }

  get access(): Access {
    return this.#gate.access;
  }

  #managed(): ManagedPipeline {
    if (!this.pipeline) throw new R3mapError("ERR_NOT_SUPPORTED", "a direct mount has no local cache");
    return this.pipeline;
  }

  /** Starts the background pull and push; with `pull.first`, resolves once everything is local. */
  async start(): Promise<void> {
    const pull = this.#description.managed?.pull;
    if (!this.pipeline) return;
    // The pull will write every page of a memory cache: fault them in on another core, ahead of the data,
    // rather than one at a time on the thread receiving it — as huge pages, whose assembly (zeroing, at
    // times compaction) then never lands on a reader's miss. Without a pull, memory is committed as used,
    // in 4 KiB pages (a miss never waits for a 2 MiB page).
    const local = this.pipeline.synced.local;
    if (pull !== false && local instanceof MemoryBackend) {
      this.#population = populateInBackground(local.segments, { hugePages: true });
    }
    this.pipeline.start();
    if (pull !== false && pull?.first) await this.pipeline.pulled();
  }

  /**
   * Takes the last chunk through the path a miss takes, before the device is
   * handed out, so that the first real miss does not pay V8's lazy
   * compilation of that path — 1 to 4 ms here, several round trips on a fast
   * network. `throughDevice` reads through the device itself (a FUSE file, on
   * a native thread), which warms the device's JavaScript too. A managed
   * mount that pulls keeps the chunk (the pull reaches it last, so nothing is
   * fetched twice); one that does not must hold only what the user touched,
   * so it marks the chunk remote again, or just reads it from the remote and
   * drops it, as a direct mount does; `forget` then drops it from the device
   * too (a slice's page). A failure is left for the first real miss to
   * report. Call after `start`.
   */
  async prime(
    throughDevice?: (offset: number, length: number) => Promise<unknown>,
    forget?: (chunk: number) => void,
  ): Promise<void> {
    const chunks = Math.ceil(this.size / this.chunkSize);
    if (chunks === 0) return;
    const last = chunks - 1;
    const offset = last * this.chunkSize;
    const wasLocal = this.pipeline?.presence.has(last) ?? false;
    try {
      if (throughDevice) {
        await throughDevice(Math.floor(offset / 4096) * 4096, 4096);
        // Touched, so cached: forget it again when only the user's touches may be kept — unless it was
        // cached before (a persisted state's chunk, maybe with changes not pushed yet).
        if (this.pipeline && !this.pulls && !wasLocal) {
          this.pipeline.markRemote([last]);
          forget?.(last);
        }
      } else if (this.pipeline && !this.pulls) {
        if (!wasLocal) await this.remote.readAt(new Uint8Array(this.size - offset), offset);
      } else if (this.pipeline) {
        await this.pipeline.synced.ensureLocalForReader(last);
      } else {
        await this.backend.readAt(new Uint8Array(this.size - offset), offset);
      }
    } catch {
      // reported by the first read that needs the remote
    }
  }

  /** Reports a background failure to listeners (devices use it for their own background work). */
  reportError(error: unknown): void {
    this.emit("error", error);
  }

  progress(): Progress | undefined {
    return this.pipeline?.progress();
  }

  /** Pushes every change and syncs the remote. */
  async sync(): Promise<void> {
    if (this.pipeline) await this.pipeline.sync();
    else await this.remote.sync();
  }

  /** Final push, then closes the backends. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#population?.stop();
      try {
        await (this.pipeline ? this.pipeline.close() : this.remote.close());
      } finally {
        // The pipeline closed (and synced) the cache: the state matches it on disk.
        this.#state?.close();
        // Its native thread ends within a step; a worker hosting the engine may exit right after this.
        await this.#population?.done;
      }
    })();
    return this.#closing;
  }
}

/**
 * `managed.warm`: before the pull, keeps every chunk of the cache file whose
 * digest equals the remote's (or the `digests` remote's), marking it present
 * — in the persisted state's presence when there is one.
 */
async function warmPresence(
  description: MountDescription,
  remote: Backend,
  local: Backend,
  state: CacheStateFile | undefined,
): Promise<{ presence: ChunkBitmap; result: WarmStartResult } | undefined> {
  const warm = description.managed?.warm;
  if (!warm) return undefined;
  const chunkSize = chunkSizeOf(description);
  const presence = state?.state.presence ?? new ChunkBitmap(Math.ceil(remote.size / chunkSize));
  const digestsUri = typeof warm === "object" ? warm.digests : undefined;
  const from = digestsUri ? await openBackend(digestsUri) : remote;
  try {
    if (from.size !== remote.size) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `managed.warm.digests names a resource of ${from.size} bytes, not the remote's ${remote.size}`,
      );
    }
    return { presence, result: await warmStart(from, local, presence, chunkSize, remote.size) };
  } finally {
    if (from !== remote) await from.close();
  }
}

function isNativeCache(local: Backend | undefined): boolean {
  return local instanceof MemoryBackend || local instanceof FileBackend;
}

/** Opens the remote a description names (or takes the one given), with the description's filters stacked on it. */
async function openRemote(description: MountDescription, given?: Backend): Promise<Backend> {
  const remote = given ?? (await openBackend(description.remote));
  try {
    return await applyFilters(remote, description.filters);
  } catch (error) {
    await remote.close().catch(() => {});
    throw error;
  }
}

function pullOptions(managed: ManagedDescription) {
  const pull = managed.pull;
  if (pull === false) return false as const;
  const order = pull?.order;
  const trace = order && order !== "sequential" ? order.trace : undefined;
  return {
    workers: pull?.workers ?? 32,
    ...(pull?.requestBytes !== undefined ? { requestBytes: pull.requestBytes } : {}),
    ...(trace ? { priority: priorityFromTrace(trace) } : {}),
  };
}

function pushOptions(managed: ManagedDescription) {
  const push = managed.push;
  if (push === false) return false as const;
  return {
    workers: push?.workers ?? 16,
    intervalMs: push?.intervalMs === undefined ? 5000 : push.intervalMs,
  };
}

/** Chunks in a recorded access trace pull first, in the order they were first accessed; the rest follow in order. */
export function priorityFromTrace(trace: readonly number[]): (chunk: number) => number {
  const rank = new Map<number, number>();
  for (const chunk of trace) if (!rank.has(chunk)) rank.set(chunk, trace.length - rank.size);
  return (chunk) => rank.get(chunk) ?? 0;
}
