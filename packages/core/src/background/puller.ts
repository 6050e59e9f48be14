import { R3mapError } from "../errors.js";
import { type Deferred, deferred } from "../util/abort.js";
import { ChunkPriorityQueue } from "../util/priority-queue.js";
import { DEFAULT_RETRY, type RetryPolicy, withRetry } from "./retry.js";

/** What the puller pulls from: usually a SyncedStage. */
export interface ChunkSource {
  readonly layout: { readonly count: number };
  isLocal(chunk: number): boolean;
  ensureLocal(chunk: number): Promise<void>;
  /** Claims and fetches a run of chunks from `chunk` in one request (see SyncedStage.claimRun). */
  claimRun?(chunk: number, maxChunks: number): { count: number; done: Promise<void> };
}

/** Higher pulls first. Receives the chunk index (not a byte offset). */
export type PullPriority = (chunk: number) => number;

export interface PullerOptions {
  /** Concurrent pulls; at least 1. */
  workers: number;
  priority?: PullPriority;
  retry?: RetryPolicy;
  /** A chunk was pulled by the puller (not by a demand read). */
  onPulled?: (chunk: number) => void;
  /**
   * Chunks fetched together at most, when the source can (`claimRun`): with
   * small chunks, one request per chunk costs more in per-request work than
   * the bytes (and a reader's miss would queue behind that work). Default 1.
   */
  runChunks?: number;
  /**
   * The first run's size in chunks; each run after it doubles, up to
   * `runChunks`. The beginning of a resource, which programs usually touch
   * first, then lands within a round trip of the start instead of behind a
   * full window of large requests. Default: `runChunks` (no ramp).
   */
  firstRunChunks?: number;
}

/**
 * Pulls every chunk of a source in the background, highest priority first,
 * with a fixed number of workers. Chunks that became local some other way (a
 * demand read, a write) are skipped. Priorities can be changed while it runs
 * (`prioritize`), e.g. to pull the neighbours of a chunk a reader just missed.
 *
 * The puller finishes only after `finalize(dirty)`: during a migration the
 * chunks changed on the seeder in the meantime are queued then, ahead of all
 * others. A managed mount that does not migrate calls `finalize([])` at once.
 */
export class Puller {
  readonly #source: ChunkSource;
  readonly #options: PullerOptions;
  readonly #queue = new ChunkPriorityQueue();
  readonly #done: Deferred<void> = deferred();
  readonly #abort = new AbortController();
  /** Without a priority function chunks are swept in order by this cursor instead of a heap of every chunk. */
  #cursor = 0;
  #sweep = false;
  #wake: Deferred<void> | undefined;
  #finalized = false;
  #started = false;
  #workers: Promise<void>[] = [];
  #active = 0;
  #failed = false;
  /** The size of the next run, ramping up to `runChunks`. */
  #runLimit: number;

  constructor(source: ChunkSource, options: PullerOptions) {
    if (!Number.isSafeInteger(options.workers) || options.workers < 1) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `pull workers must be at least 1, got ${options.workers}; to not pull in the background, do not create a puller`,
      );
    }
    this.#source = source;
    this.#options = options;
    const runChunks = options.runChunks ?? 1;
    this.#runLimit = Math.max(1, Math.min(runChunks, options.firstRunChunks ?? runChunks));
    // The done promise may legitimately never be awaited.
    this.#done.promise.catch(() => {});
  }

  /** Resolves when every chunk is local and finalize was called; rejects on the first chunk that failed every retry. */
  get done(): Promise<void> {
    return this.#done.promise;
  }

  /** Chunks still queued (an upper bound while sweeping in order). */
  get pending(): number {
    return this.#queue.size + (this.#sweep ? this.#source.layout.count - this.#cursor : 0);
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    const priority = this.#options.priority;
    if (priority) {
      for (let chunk = 0; chunk < this.#source.layout.count; chunk++) {
        if (!this.#source.isLocal(chunk)) this.#queue.push(chunk, priority(chunk));
      }
    } else {
      this.#sweep = true;
    }
    // More workers than chunks would only wait forever (each costs a promise chain): 100 million of
    // them on a 64-chunk remote once spun a core and ran out of memory.
    const workers = Math.min(this.#options.workers, Math.max(1, this.#source.layout.count));
    for (let i = 0; i < workers; i++) this.#workers.push(this.#work());
  }

  /** Workers running: the `workers` option, capped at the number of chunks. */
  get workers(): number {
    return this.#workers.length;
  }

  /** Changes the priority of a chunk still waiting (or queues it again). */
  prioritize(chunk: number, priority: number): void {
    if (this.#finishedOrFailed()) return;
    this.#queue.push(chunk, priority);
    this.#notify();
  }

  /**
   * Queues `dirty` chunks ahead of everything else and lets the puller finish
   * once the queue is empty. Only the first call counts.
   */
  finalize(dirty: Iterable<number> = []): void {
    if (this.#finalized) return;
    this.#finalized = true;
    let order = 0;
    for (const chunk of dirty) this.#queue.push(chunk, Number.MAX_SAFE_INTEGER - order++);
    this.#notify();
  }

  /** Stops the workers after their current pull; `done` rejects with ERR_CLOSED if it had not finished. */
  async close(): Promise<void> {
    this.#abort.abort();
    this.#notify();
    await Promise.allSettled(this.#workers);
    this.#done.reject(new R3mapError("ERR_CLOSED", "the puller was closed before it finished"));
  }

  async #work(): Promise<void> {
    const signal = this.#abort.signal;
    while (!signal.aborted && !this.#failed) {
      const chunk = this.#next();
      if (chunk === undefined) {
        if (this.#finalized && this.#active === 0) {
          this.#done.resolve();
          this.#notify();
          return;
        }
        this.#wake ??= deferred();
        await this.#wake.promise;
        continue;
      }
      if (this.#source.isLocal(chunk)) continue;
      this.#active++;
      try {
        await withRetry(() => this.#fetch(chunk), this.#options.retry ?? DEFAULT_RETRY, signal);
        this.#options.onPulled?.(chunk);
      } catch (error) {
        if (!signal.aborted) {
          this.#failed = true;
          this.#done.reject(error);
          this.#notify();
        }
      } finally {
        this.#active--;
        // Whoever finishes last while the queue is empty completes the puller.
        if (this.#active === 0) this.#notify();
      }
    }
  }

  /**
   * One request: `chunk` alone, or the run of small chunks from it (as long
   * as the ramp allows), which the sweep then skips (the claim is made before the first await, so no other
   * worker has moved the cursor in between).
   */
  async #fetch(chunk: number): Promise<void> {
    const runChunks = this.#options.runChunks ?? 1;
    if (runChunks <= 1 || !this.#source.claimRun) return this.#source.ensureLocal(chunk);
    const { count, done } = this.#source.claimRun(chunk, this.#runLimit);
    if (count > 0) this.#runLimit = Math.min(runChunks, this.#runLimit * 2);
    if (this.#sweep && this.#cursor === chunk + 1) this.#cursor = chunk + Math.max(1, count);
    await done;
    for (let next = chunk + 1; next < chunk + count; next++) this.#options.onPulled?.(next);
  }

  /** The next chunk to pull: explicitly prioritized ones first, then the in-order sweep. */
  #next(): number | undefined {
    const queued = this.#queue.pop();
    if (queued !== undefined) return queued;
    const count = this.#source.layout.count;
    while (this.#sweep && this.#cursor < count) {
      const chunk = this.#cursor++;
      if (!this.#source.isLocal(chunk)) return chunk;
    }
    return undefined;
  }

  #finishedOrFailed(): boolean {
    return this.#failed || this.#abort.signal.aborted;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.resolve();
  }
}
