import type { Backend } from "../backend.js";
import type { ChunkBitmap } from "../chunk-bitmap.js";
import type { ChunkLayout } from "../chunk-layout.js";
import { R3mapError } from "../errors.js";
import { isAllZero } from "../util/zero.js";
import { DEFAULT_RETRY, type RetryPolicy, withRetry } from "./retry.js";

export interface PusherOptions {
  /** Concurrent pushes; at least 1. */
  workers: number;
  /** Push dirty chunks every this many milliseconds; `null` pushes only on `flush()` and `close()`. */
  intervalMs: number | null;
  retry?: RetryPolicy;
  /** When given, a chunk that is not present locally is never pushed (it holds no data of ours). */
  presence?: ChunkBitmap;
  onPushed?: (chunk: number, bytes: number) => void;
  /**
   * Chunks written by someone who does not call `markDirty` — native code
   * storing writes in the cache — one bit each; every flush takes the bits
   * (atomically) and pushes those chunks too.
   */
  written?: ChunkBitmap;
  /**
   * Chunks written where nobody calls `markDirty` (native code's bitmap, a
   * slice's memory found by a dirty-page scan): taken at the start of every
   * flush and pushed with the others.
   */
  collect?: WriteSource;
  /** A background (interval) push failed; the chunks stay dirty and are retried. */
  onError?: (error: unknown) => void;
  /**
   * A record of the chunks changed and not yet pushed, kept where it
   * outlives the process (a mapped file): a chunk's bit is set before the
   * chunk is queued — bits taken from `written` are moved here before they
   * leave it — and cleared only once its push and the remote's sync that
   * followed succeeded, unless it changed again meanwhile. Bits set when the
   * pusher is created (a previous run's) are pushed like any change.
   */
  pending?: ChunkBitmap;
}

/** Chunks written out of a stage's sight, handed over once each (see `PusherOptions.collect`). */
export interface WriteSource {
  /** The chunks written since the last call. */
  take(): Iterable<number>;
  /** How many are waiting to be taken, where the source can tell cheaply (for progress). */
  pending?(): number;
}

/**
 * Writes chunks changed locally back to the remote: on an interval, on
 * `flush()`, and a last time on `close()`; a flush that pushed anything ends
 * with `remote.sync()`, so what `flush()` returns from is durable remotely. Each dirty chunk is pushed once per
 * change however often it was written; a chunk written again while its push is
 * in flight is pushed again afterwards, never concurrently (so the remote sees
 * writes in order). A push that fails every retry leaves its chunk dirty, so no
 * write is lost; `flush()` then rejects.
 */
export class Pusher {
  readonly #dirty = new Set<number>();
  readonly #inFlight = new Map<number, Promise<void>>();
  /** Flushes under way; a flush waits for the ones started before it. */
  readonly #flushes = new Set<Promise<void>>();
  /** The flush that last took each chunk: only that one may clear the chunk's `pending` bit. */
  readonly #takenBy = new Map<number, number>();
  #flushCount = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(
    readonly local: Backend,
    readonly remote: Backend,
    readonly layout: ChunkLayout,
    readonly options: PusherOptions,
  ) {
    if (!Number.isSafeInteger(options.workers) || options.workers < 1) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `push workers must be at least 1, got ${options.workers}; to never push, do not create a pusher`,
      );
    }
    if (options.intervalMs !== null && !(options.intervalMs > 0)) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `push interval must be positive or null, got ${options.intervalMs}`,
      );
    }
    // Changes a previous run made and did not push.
    options.pending?.forEach((chunk) => {
      this.#dirty.add(chunk);
    });
  }

  /** Chunks changed and not yet pushed (in flight ones excluded). */
  get dirtyCount(): number {
    return (
      this.#dirty.size + (this.options.written?.cardinality() ?? 0) + (this.options.collect?.pending?.() ?? 0)
    );
  }

  /** Starts the periodic push. */
  start(): void {
    if (this.options.intervalMs === null || this.#timer || this.#closed) return;
    this.#timer = setInterval(() => {
      this.flush().catch((error) => this.options.onError?.(error));
    }, this.options.intervalMs);
    // The interval alone must not keep a process alive; close() does the final push.
    this.#timer.unref();
  }

  markDirty(chunk: number): void {
    if (this.#closed) return;
    this.options.pending?.set(chunk);
    this.#dirty.add(chunk);
  }

  /**
   * Pushes every chunk dirty now, and waits for earlier flushes (the interval's
   * included) to finish, so that every write made before the call is on the
   * remote when it resolves. Rejects if any of those chunks could not be pushed.
   */
  async flush(): Promise<void> {
    const pending = this.options.pending;
    const take = (chunk: number) => this.#dirty.add(chunk);
    // With a pending record, bits leave `written` only once they are in it.
    if (pending) this.options.written?.moveAllTo(pending, take);
    else this.options.written?.takeAll(take);
    if (this.options.collect) for (const chunk of this.options.collect.take()) this.markDirty(chunk);
    const earlier = [...this.#flushes];
    const flushId = ++this.#flushCount;
    const chunks = [...this.#dirty];
    for (const chunk of chunks) this.#takenBy.set(chunk, flushId);
    const own = this.#pushAll(chunks, flushId);
    this.#dirty.clear();
    this.#flushes.add(own);
    try {
      const results = await Promise.allSettled([own, ...earlier]);
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed.length > 0) throw failed[0]!.reason;
    } finally {
      this.#flushes.delete(own);
    }
  }

  /** Pushes `chunks`, then syncs the remote when all succeeded. */
  async #pushAll(chunks: number[], flushId: number): Promise<void> {
    try {
      await this.#pushEach(chunks);
      if (chunks.length > 0) await this.remote.sync();
    } catch (error) {
      this.#release(chunks, flushId, false);
      throw error;
    }
    this.#release(chunks, flushId, true);
  }

  /**
   * This flush is done with `chunks`; when `synced`, the ones no later flush
   * took and nobody changed since are on the remote for good: their
   * `pending` bits go.
   */
  #release(chunks: number[], flushId: number, synced: boolean): void {
    for (const chunk of chunks) {
      if (this.#takenBy.get(chunk) !== flushId) continue;
      this.#takenBy.delete(chunk);
      if (synced && !this.#dirty.has(chunk)) this.options.pending?.clear(chunk);
    }
  }

  /** Pushes `chunks` with at most `workers` at once; rejects when any failed (those stay dirty). */
  async #pushEach(chunks: number[]): Promise<void> {
    let next = 0;
    const errors: unknown[] = [];
    const worker = async () => {
      while (next < chunks.length) {
        const chunk = chunks[next++]!;
        try {
          await this.#push(chunk);
        } catch (error) {
          errors.push(error);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.workers, chunks.length) }, worker));
    if (errors.length > 0) {
      throw new R3mapError(
        "ERR_REMOTE_FAILED",
        `${errors.length} chunk(s) could not be pushed to the remote; they stay dirty and will be retried`,
        { cause: errors[0] },
      );
    }
  }

  /** Stops the interval and pushes what is left. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#timer);
      this.#timer = undefined;
      try {
        await this.flush();
      } finally {
        this.#closed = true;
      }
    })();
    return this.#closing;
  }

  async #push(chunk: number): Promise<void> {
    // One push per chunk at a time: wait for the previous one, whose data is older.
    for (let previous = this.#inFlight.get(chunk); previous; previous = this.#inFlight.get(chunk)) {
      await previous.catch(() => {});
    }
    if (this.options.presence && !this.options.presence.has(chunk)) return;
    const running = this.#copy(chunk);
    this.#inFlight.set(chunk, running);
    try {
      await running;
    } catch (error) {
      this.#dirty.add(chunk);
      throw error;
    } finally {
      this.#inFlight.delete(chunk);
    }
  }

  async #copy(chunk: number): Promise<void> {
    const offset = this.layout.offsetOf(chunk);
    const buffer = new Uint8Array(this.layout.lengthOf(chunk));
    // Snapshot the local bytes first: a write after this point re-marks the chunk dirty.
    await this.local.readAt(buffer, offset);
    await withRetry(
      // A chunk of zeros (a trimmed one, say) goes as write-zeroes where the remote can: nothing to send.
      () =>
        this.remote.writeZeroes && isAllZero(buffer)
          ? this.remote.writeZeroes(offset, buffer.length)
          : this.remote.writeAt(buffer, offset),
      this.options.retry ?? DEFAULT_RETRY,
    );
    this.options.onPushed?.(chunk, buffer.length);
  }
}
