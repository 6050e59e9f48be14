import type { Backend } from "./backend.js";
import { Puller, type PullPriority } from "./background/puller.js";
import { Pusher, type WriteSource } from "./background/pusher.js";
import type { RetryPolicy } from "./background/retry.js";
import type { ChunkBitmap } from "./chunk-bitmap.js";
import type { ChunkLayout } from "./chunk-layout.js";
import { R3mapError } from "./errors.js";
import { type Progress, TypedEmitter } from "./events.js";
import { ArbitraryStage } from "./stages/arbitrary.js";
import { LockableStage } from "./stages/lockable.js";
import { type ChunkOrigin, SyncedStage } from "./stages/synced.js";

export interface PullOptions {
  /** Concurrent background pulls (default 32: enough to fill a link at tens of milliseconds of RTT). */
  workers?: number;
  /** Higher pulls first; gets the chunk index. Default: in order. */
  priority?: PullPriority;
  /**
   * After a read misses chunk i, chunks i+1 … i+readahead are pulled next, so
   * a reader ahead of the background sweep finds its next chunks coming
   * (default 4; 0 turns it off).
   */
  readahead?: number;
  /**
   * Bytes the background pull asks for per request, fetching runs of
   * consecutive small chunks together (a chunk stays the unit of presence,
   * misses and pushes). Default 1 MiB; at most one chunk when chunks are
   * larger. With 4 KiB chunks, one request per chunk made the pull
   * JavaScript-bound, and a reader's miss waited behind thousands of
   * completions on the engine's thread. The first requests are smaller: 64
   * KiB, doubling up to this, so the start of the resource lands first.
   */
  requestBytes?: number;
  retry?: RetryPolicy;
}

export interface PushOptions {
  /** Concurrent pushes (default 16). */
  workers?: number;
  /** Milliseconds between background pushes (default 20 000); `null` pushes only on sync and close. */
  intervalMs?: number | null;
  retry?: RetryPolicy;
}

export interface ManagedPipelineOptions {
  remote: Backend;
  /** The local cache; must be at least as large as the remote. */
  local: Backend;
  /**
   * Optional second connection to the same remote for the background pull, so
   * that a demand fetch never waits behind the puller's requests (closed with
   * the pipeline).
   */
  pullRemote?: Backend;
  chunkSize: number;
  /** A presence bitmap to fill (e.g. shared with native code); one is created otherwise. */
  presence?: ChunkBitmap;
  /**
   * Chunks written behind the pipeline's back — by native code storing
   * writes to present chunks in `local` — one bit each; the pusher takes them
   * on every flush. Only writes to present chunks may be made that way.
   */
  written?: ChunkBitmap;
  /**
   * Chunks written where the pipeline does not see it (native code's
   * bitmap, a slice's memory found by a dirty-page scan), taken before every
   * push. An alternative to `written` for callers that must see those chunks
   * too (a migration's tracking).
   */
  collectWrites?: WriteSource;
  /**
   * Chunks changed and not yet pushed, kept where they outlive the process
   * (see `PusherOptions.pending`). With a `presence` and `written` kept the
   * same way, a pipeline restarted over the same local cache reuses every
   * chunk it holds and pushes what was still dirty (see `ChunkState`).
   */
  pending?: ChunkBitmap;
  /** Bits set while a chunk is being fetched or first written (see `SyncedStageOptions.inFlight`). */
  inFlight?: ChunkBitmap;
  /** Background pull; `false` fetches chunks only when they are read. */
  pull?: PullOptions | false;
  /** Write-back; `false` keeps writes local only (they never reach the remote). */
  push?: PushOptions | false;
  /**
   * Keep the puller open until `finalize(dirty)` (a migration's leecher). By
   * default it is finalized at start with no dirty chunks.
   */
  awaitFinalize?: boolean;
  /** Close `remote` and `local` when the pipeline closes (default true); false leaves them to the caller, synced. */
  closeBackends?: boolean;
}

export interface ManagedPipelineEvents {
  /** A chunk became local. */
  "chunk-local": [chunk: number, origin: ChunkOrigin];
  /** Something changed; carries the new state. */
  progress: [Progress];
  /** A background pull or push failed (the data is kept; pushes are retried). */
  error: [unknown];
}

/**
 * The managed stack: a local cache in front of a remote, kept in sync.
 *
 *     backend ─ ArbitraryStage ─ LockableStage ─ SyncedStage ─┬─ local
 *                                                            └─ remote
 *     Puller → SyncedStage.ensureLocal        (background pull)
 *     SyncedStage.onWrite → Pusher → remote   (write-back)
 *
 * `backend` takes any offset and length; a device frontend serves it.
 */
export class ManagedPipeline extends TypedEmitter<ManagedPipelineEvents> {
  readonly backend: Backend;
  readonly synced: SyncedStage;
  readonly lockable: LockableStage;
  readonly puller: Puller | undefined;
  readonly pusher: Pusher | undefined;
  readonly presence: ChunkBitmap;
  readonly layout: ChunkLayout;
  readonly #options: ManagedPipelineOptions;
  readonly #stats = { bytesPulled: 0, bytesPushed: 0, fetches: 0, fetchMs: 0 };
  #chunksLocal = 0;
  #misses = 0;
  /** The background pull has brought everything (later misses are fetched one by one). */
  #pullFinished = false;
  /** The progress report due at the end of this event-loop turn, if one is. */
  #reportDue: NodeJS.Immediate | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: ManagedPipelineOptions) {
    super();
    this.#options = options;
    const { remote, local, chunkSize } = options;
    this.synced = new SyncedStage(remote, local, {
      chunkSize,
      ...(options.presence ? { presence: options.presence } : {}),
      ...(options.inFlight ? { inFlight: options.inFlight } : {}),
      onChunkLocal: (chunk, origin) => {
        this.#chunksLocal++;
        this.emit("chunk-local", chunk, origin);
        this.#report();
      },
      onWrite: (chunk) => this.pusher?.markDirty(chunk),
      onMiss: (chunk) => this.#readAhead(chunk),
      ...(options.pullRemote ? { background: options.pullRemote } : {}),
      onFetched: (_chunk, bytes, ms) => {
        this.#stats.bytesPulled += bytes;
        this.#stats.fetches++;
        this.#stats.fetchMs += ms;
      },
    });
    this.layout = this.synced.layout;
    this.presence = this.synced.presence;
    this.#chunksLocal = this.presence.cardinality();
    this.lockable = new LockableStage(this.synced);
    this.backend = new ArbitraryStage(this.lockable, chunkSize);

    const pull = options.pull === undefined ? {} : options.pull;
    this.puller =
      pull === false
        ? undefined
        : new Puller(this.synced, {
            workers: pull.workers ?? 32,
            runChunks: Math.max(1, Math.floor(requestBytes(pull.requestBytes) / chunkSize)),
            firstRunChunks: Math.max(1, Math.floor(FIRST_REQUEST_BYTES / chunkSize)),
            ...(pull.priority ? { priority: pull.priority } : {}),
            ...(pull.retry ? { retry: pull.retry } : {}),
          });

    const push = options.push === undefined ? {} : options.push;
    this.pusher =
      push === false
        ? undefined
        : new Pusher(local, remote, this.layout, {
            workers: push.workers ?? 16,
            intervalMs: push.intervalMs === undefined ? 20_000 : push.intervalMs,
            presence: this.presence,
            ...(options.written ? { written: options.written } : {}),
            ...(options.pending ? { pending: options.pending } : {}),
            ...(options.collectWrites ? { collect: options.collectWrites } : {}),
            ...(push.retry ? { retry: push.retry } : {}),
            onPushed: (_chunk, bytes) => {
              this.#stats.bytesPushed += bytes;
              this.#report();
            },
            onError: (error) => this.emit("error", error),
          });
  }

  /** Starts the background pull and push. Reads and writes work before and after. */
  start(): void {
    this.#assertOpen();
    if (this.puller) {
      this.puller.start();
      if (!this.#options.awaitFinalize) this.puller.finalize([]);
      this.puller.done.then(
        () => {
          this.#pullFinished = true;
        },
        (error) => {
          if (!this.#closing) this.emit("error", error);
        },
      );
    }
    this.pusher?.start();
  }

  /** Resolves once every chunk is local (needs a puller, and finalize when `awaitFinalize`). */
  async pulled(): Promise<void> {
    if (!this.puller) throw new R3mapError("ERR_INVALID_ARGUMENT", "this pipeline has no background puller");
    await this.puller.done;
  }

  /** Native code wrote chunks `first`..`last` whole before they were local (see `SyncedStage.storedNatively`). */
  storedNatively(first: number, last: number): void {
    for (let chunk = first; chunk <= last; chunk++) this.synced.storedNatively(chunk);
  }

  /** Marks chunks as remote again (their next read fetches them), keeping the progress count right. */
  markRemote(chunks: readonly number[]): void {
    this.synced.markRemote(chunks);
    this.#chunksLocal = this.presence.cardinality();
    this.#report();
  }

  /**
   * Marks the chunks that changed on the other side as remote and lets the
   * puller fetch them first, then finish.
   */
  finalize(dirty: readonly number[]): void {
    this.synced.markRemote(dirty);
    this.#chunksLocal = this.presence.cardinality();
    this.puller?.finalize(dirty);
    this.#report();
  }

  /** Pushes every change made so far and makes it durable remotely. */
  async sync(): Promise<void> {
    this.#assertOpen();
    await this.pusher?.flush();
    await this.synced.sync();
  }

  progress(): Progress {
    return {
      chunksTotal: this.layout.count,
      chunksLocal: this.#chunksLocal,
      bytesPulled: this.#stats.bytesPulled,
      bytesPushed: this.#stats.bytesPushed,
      dirtyChunks: this.pusher?.dirtyCount ?? 0,
      fetches: this.#stats.fetches,
      meanFetchMs: this.#stats.fetches === 0 ? 0 : this.#stats.fetchMs / this.#stats.fetches,
    };
  }

  /** Stops pulling, pushes what is left, closes both backends. Idempotent; rejects if the final push failed. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.puller?.close();
      try {
        await this.pusher?.close();
      } finally {
        if (this.#options.closeBackends === false) await this.synced.sync();
        else await this.synced.close();
        // The last report goes out before close() resolves, not a turn later.
        if (this.#reportDue) {
          clearImmediate(this.#reportDue);
          this.#reportDue = undefined;
          this.emit("progress", this.progress());
        }
      }
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * A reader got chunks `first`..`last` straight from the remote, bypassing
   * the cache (native code asked the server itself): pulls them next, and the
   * readahead after them, as if the read had missed.
   */
  readFromRemote(first: number, last: number): void {
    if (this.puller && !this.#pullFinished) {
      this.#readAhead(first, last, true);
      return;
    }
    // Nobody pulls any more (a chunk marked remote after the pull finished): fetch them here.
    for (let chunk = first; chunk <= last; chunk++) {
      this.synced.ensureLocal(chunk).catch((error) => {
        if (!this.#closing) this.emit("error", error);
      });
    }
  }

  /**
   * Queues the chunks after a demand miss (`first`..`last` themselves too,
   * with `including`) ahead of the sweep; a later miss outranks an earlier one.
   */
  #readAhead(first: number, last = first, including = false): void {
    const puller = this.puller;
    const pull = this.#options.pull;
    const count = pull === false || pull === undefined ? 4 : (pull.readahead ?? 4);
    if (!puller || (count <= 0 && !including)) return;
    this.#misses++;
    const base = READAHEAD_PRIORITY + this.#misses * MISS_PRIORITY_STEP;
    const start = including ? first : last + 1;
    const end = Math.min(this.layout.count - 1, last + Math.min(Math.max(0, count), MISS_PRIORITY_STEP - 1));
    for (let next = start; next <= end; next++) {
      if (!this.presence.has(next)) puller.prioritize(next, base - (next - start));
    }
  }

  #assertOpen(): void {
    if (this.#closing) throw new R3mapError("ERR_CLOSED", "the managed pipeline is closed");
  }

  /**
   * Progress goes out once per event-loop turn, after the turn's callbacks: a
   * pull of small chunks makes hundreds of chunks local in one turn, and one
   * report each (which counts the pusher's bitmap) used to take most of the
   * engine's time — and came before a waiting reader's answer.
   */
  #report(): void {
    if (this.#reportDue || this.listenerCount("progress") === 0) return;
    this.#reportDue = setImmediate(() => {
      this.#reportDue = undefined;
      this.emit("progress", this.progress());
    });
  }
}

/**
 * Priorities of chunks queued after a miss: above any a priority function
 * gives (access traces rank by position, far below 2^40), and each miss
 * above the one before it — by more than any readahead window is long, so
 * the chunks of one miss keep their order between those of the next.
 */
const READAHEAD_PRIORITY = 2 ** 40;
const MISS_PRIORITY_STEP = 1024;

/** A pull's first request asks for this much; each next one for twice as much, up to `pull.requestBytes`. */
const FIRST_REQUEST_BYTES = 64 * 1024;

function requestBytes(value: number | undefined): number {
  if (value === undefined) return 1024 * 1024;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `pull.requestBytes must be a positive integer, got ${value}`,
    );
  }
  return value;
}
