import { type Backend, memoryView } from "../backend.js";
import { ChunkBitmap } from "../chunk-bitmap.js";
import type { ChunkLayout } from "../chunk-layout.js";
import { R3mapError } from "../errors.js";
import { settleAll } from "./arbitrary.js";
import { ChunkedStage } from "./chunked.js";

/** Why a chunk became local. */
export type ChunkOrigin = "fetch" | "write";

export interface SyncedStageOptions {
  chunkSize: number;
  /** Presence of each chunk in `local`; pass a shared one so native code and other threads see it. */
  presence?: ChunkBitmap;
  /** A chunk became local: fetched from the remote, or written whole before it was ever fetched. */
  onChunkLocal?: (chunk: number, origin: ChunkOrigin) => void;
  /** A write landed in the local copy of `chunk` (the pusher's dirty feed). */
  onWrite?: (chunk: number) => void;
  /**
   * A second connection to the same remote for background fetches
   * (`ensureLocal`), so a reader's fetch never queues behind many pulled
   * chunks on one connection. Closed with the stage.
   */
  background?: Backend;
  /** A read found `chunk` not local and is about to fetch it (a demand miss, not a background pull). */
  onMiss?: (chunk: number) => void;
  /** A chunk fetch finished; `ms` is its duration (for latency metrics). */
  onFetched?: (chunk: number, bytes: number, ms: number) => void;
  /**
   * One bit per chunk while someone fetches it or first writes it (shared
   * memory). This stage takes a chunk's bit (test-and-set) before it fetches
   * or first writes the chunk, and gives it back after. Native code may take
   * bits too, to fetch and store chunks itself (a slice's fault): the stage
   * then waits for it instead, so the two never write one chunk. Native code
   * that only reads the remote leaves chunks with their bit set alone.
   */
  inFlight?: ChunkBitmap;
}

/**
 * Keeps a local copy of a remote resource, chunk by chunk. Takes whole chunks
 * only (put an ArbitraryStage above it).
 *
 * - A read of a chunk that is not local fetches it from the remote once,
 *   stores it locally, marks it present, and answers. Concurrent readers of the
 *   same chunk share that single fetch.
 * - A write makes the chunk local without fetching it (it is overwritten whole).
 *   A write to a chunk that is being fetched waits for the fetch, so the
 *   fetched bytes can never overwrite newer written ones.
 */
export class SyncedStage implements Backend {
  readonly layout: ChunkLayout;
  readonly presence: ChunkBitmap;
  readonly #validator: ChunkedStage;
  /** The fetch or first write in progress per chunk; other operations on the chunk wait for it. */
  readonly #pending = new Map<number, Promise<void>>();
  /** Background runs (`claimRun`) no reader has overtaken yet: the first reader's miss with a buffer need not wait for one. */
  readonly #runs = new WeakSet<Promise<void>>();
  /** Chunks marked remote while a fetch of them was under way: that fetch must not make them present. */
  readonly #stale = new Set<number>();
  readonly #options: SyncedStageOptions;

  constructor(
    readonly remote: Backend,
    readonly local: Backend,
    options: SyncedStageOptions,
  ) {
    if (local.size < remote.size) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `the local backend (${local.size} bytes) is smaller than the remote (${remote.size} bytes)`,
      );
    }
    this.#options = options;
    this.#validator = new ChunkedStage(remote, options.chunkSize);
    this.layout = this.#validator.layout;
    this.presence = options.presence ?? new ChunkBitmap(this.layout.count);
    if (this.presence.count < this.layout.count) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        "the presence bitmap has fewer bits than there are chunks",
      );
    }
  }

  get size(): number {
    return this.remote.size;
  }

  get readOnly(): boolean {
    return this.local.readOnly ?? false;
  }

  /** Whole chunks only. */
  get byteRanges(): boolean {
    return false;
  }

  isLocal(chunk: number): boolean {
    return this.presence.has(chunk);
  }

  async readAt(buffer: Uint8Array, offset: number): Promise<void> {
    const chunk = this.#validator.check(offset, buffer.length);
    if (!this.presence.has(chunk)) this.#options.onMiss?.(chunk);
    if (this.presence.has(chunk) || !(await this.#ensureLocal(chunk, buffer))) {
      await this.local.readAt(buffer, offset);
    }
  }

  async writeAt(buffer: Uint8Array, offset: number): Promise<void> {
    const chunk = this.#validator.check(offset, buffer.length);
    await this.#store(chunk, () => this.local.writeAt(buffer, offset));
  }

  /**
   * Whole chunks only (an ArbitraryStage above zeroes partial ones). The
   * local copy is trimmed — or zeroed, where the cache cannot trim — and the
   * chunks count as written: a pushed all-zero chunk is sent as write-zeroes
   * where the remote can.
   */
  readonly trim = (offset: number, length: number): Promise<void> =>
    this.#zero(offset, length, this.local.trim ?? this.local.writeZeroes);

  readonly writeZeroes = (offset: number, length: number): Promise<void> =>
    this.#zero(offset, length, this.local.writeZeroes);

  async #zero(
    offset: number,
    length: number,
    zeroLocal: ((offset: number, length: number) => Promise<void>) | undefined,
  ): Promise<void> {
    const [first, end] = this.#validator.checkSpan(offset, length);
    const stores: Promise<void>[] = [];
    for (let chunk = first; chunk < end; chunk++) {
      const chunkOffset = this.layout.offsetOf(chunk);
      const chunkLength = this.layout.lengthOf(chunk);
      stores.push(
        this.#store(chunk, () =>
          zeroLocal
            ? zeroLocal.call(this.local, chunkOffset, chunkLength)
            : this.local.writeAt(new Uint8Array(chunkLength), chunkOffset),
        ),
      );
    }
    await settleAll(stores);
  }

  /**
   * Writes a whole chunk with `write`: waits for whoever is bringing the
   * chunk (then it is present, or ours to write first — a first write claims
   * it and makes it present without fetching), then reports the write.
   */
  async #store(chunk: number, write: () => Promise<void>): Promise<void> {
    let first = false;
    for (;;) {
      const pending = this.#pending.get(chunk);
      if (pending) {
        await pending.catch(() => {});
      } else if (this.presence.has(chunk)) {
        break;
      } else if (this.#takeBit(chunk)) {
        first = true;
        break;
      } else {
        await this.#nativeFetch(chunk);
      }
    }
    if (!first) {
      await write();
    } else {
      await this.#claim(chunk, async () => {
        await write();
        this.presence.set(chunk);
        this.#options.onChunkLocal?.(chunk, "write");
      });
    }
    this.#options.onWrite?.(chunk);
  }

  /** Fetches `chunk` if it is not local yet, over the background connection (the puller's entry point). */
  async ensureLocal(chunk: number): Promise<void> {
    if (!this.presence.has(chunk)) await this.#ensureLocal(chunk);
  }

  /**
   * A reader is blocked on `chunk` outside `readAt` (a page fault in a
   * slice): fetches it if needed as a read miss would — over the demand
   * connection, never queued behind the background pull — and reports the
   * miss. A chunk that a background run is fetching arrives with the run:
   * the reader has no buffer of its own to overtake it with.
   */
  async ensureLocalForReader(chunk: number): Promise<void> {
    if (this.presence.has(chunk)) return;
    this.#options.onMiss?.(chunk);
    await this.#ensureLocal(chunk, undefined, true);
  }

  /**
   * The puller's entry point when chunks are small: claims `chunk` and the
   * chunks after it that are neither local nor being fetched — at most
   * `maxChunks`, stopping at the first that is — and fetches them all with
   * one remote read. The claim is made before this returns (readers and
   * writers of those chunks wait for the fetch), so a caller sweeping in
   * order can skip `count` chunks at once. A `chunk` that is local or already
   * being fetched is not claimed: `count` is 0 and `done` settles with that
   * other fetch.
   */
  claimRun(chunk: number, maxChunks: number): { count: number; done: Promise<void> } {
    if (this.presence.has(chunk)) return { count: 0, done: Promise.resolve() };
    const other = this.#pending.get(chunk);
    if (other) return { count: 0, done: other };
    if (!this.#takeBit(chunk)) return { count: 0, done: this.#nativeFetch(chunk) };
    let count = 1;
    const limit = Math.min(maxChunks, this.layout.count - chunk);
    while (
      count < limit &&
      !this.presence.has(chunk + count) &&
      !this.#pending.has(chunk + count) &&
      this.#takeBit(chunk + count)
    ) {
      count++;
    }
    const source = this.#options.background ?? this.remote;
    const done = this.#claimAll(chunk, count, true, () => this.#fetch(chunk, count, source));
    return { count, done };
  }

  /**
   * Native code fetched `chunk`, stored it and marked it present (holding its
   * `inFlight` bit meanwhile): reported as a demand fetch.
   */
  landedNatively(chunk: number): void {
    this.#options.onMiss?.(chunk);
    this.#options.onChunkLocal?.(chunk, "fetch");
  }

  /**
   * Native code wrote `chunk` whole before it was ever fetched and marked it
   * present (holding its `inFlight` bit meanwhile; the change reaches the
   * pusher through its written bitmap): reported as a first write.
   */
  storedNatively(chunk: number): void {
    this.#options.onChunkLocal?.(chunk, "write");
  }

  /**
   * Marks chunks as stale so the next read fetches them again (a migration's
   * dirty chunks, changed on the other host). A fetch of one of them under
   * way now may carry the old bytes: it does not mark the chunk present when
   * it lands, so the chunk is fetched again.
   */
  markRemote(chunks: Iterable<number>): void {
    for (const chunk of chunks) {
      if (!Number.isSafeInteger(chunk) || chunk < 0 || chunk >= this.layout.count) {
        throw new R3mapError(
          "ERR_OUT_OF_RANGE",
          `chunk ${chunk} does not exist (${this.layout.count} chunks)`,
        );
      }
      this.presence.clear(chunk);
      if (this.#pending.has(chunk)) this.#stale.add(chunk);
    }
  }

  sync(): Promise<void> {
    return this.local.sync();
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.#pending.values()]);
    try {
      await this.local.close();
    } finally {
      await Promise.all([this.remote.close(), this.#options.background?.close()]);
    }
  }

  /**
   * Makes `chunk` local, joining a fetch already under way. When this call
   * starts the fetch and `into` is given, the remote bytes land straight in
   * `into` and the result is true (the caller needs no local read). A
   * `demand` fetch (a reader waits) uses the demand connection.
   */
  async #ensureLocal(chunk: number, into?: Uint8Array, demand = into !== undefined): Promise<boolean> {
    for (;;) {
      if (this.presence.has(chunk)) return false;
      const pending = this.#pending.get(chunk);
      if (!pending) {
        if (this.#takeBit(chunk)) break;
        await this.#nativeFetch(chunk);
        continue;
      }
      // Once per run: a reader walking through a run would otherwise fetch every chunk of it twice.
      if (into && this.#runs.delete(pending)) {
        await this.#overtake(chunk, into);
        return true;
      }
      await pending;
    }
    // A reader's fetch takes the demand connection; the puller's, the background one.
    const source = demand ? this.remote : (this.#options.background ?? this.remote);
    await this.#claim(chunk, () => this.#fetch(chunk, 1, source, into));
    return into !== undefined;
  }

  /**
   * Fetches `count` chunks from `first` with one read of `source` and marks
   * them local. The bytes land straight in a memory cache when it lends its
   * memory (no buffer, no copy), else in `into` (a reader's buffer) or a fresh
   * one that is then written to the cache; the chunks are marked present only
   * once stored. The caller holds the chunks' claim, so writes wait for this.
   */
  async #fetch(first: number, count: number, source: Backend, into?: Uint8Array): Promise<void> {
    const offset = this.layout.offsetOf(first);
    const last = first + count - 1;
    const length = this.layout.offsetOf(last) + this.layout.lengthOf(last) - offset;
    const direct = into ? undefined : memoryView(this.local, offset, length);
    const buffer = into ?? direct ?? new Uint8Array(length);
    const started = performance.now();
    await source.readAt(buffer, offset);
    if (!direct) await this.local.writeAt(buffer, offset);
    this.#options.onFetched?.(first, length, performance.now() - started);
    for (let chunk = first; chunk <= last; chunk++) {
      // Marked remote while this fetch was under way: what landed may be older than the remote.
      if (this.#stale.delete(chunk)) continue;
      // A reader may have overtaken a run for one of its chunks (`#overtake`): that chunk is local already.
      if (this.presence.set(chunk)) this.#options.onChunkLocal?.(chunk, "fetch");
    }
  }

  /**
   * A reader's miss on a chunk that a background run is still fetching: reads
   * the chunk alone over the demand connection into the reader's own buffer
   * instead of waiting for the run, which may be queued behind megabytes of
   * others. The first miss on a run only: the chunks after it arrive with the
   * run.
   *
   * The chunk is neither stored nor marked present: the run may still be
   * writing its bytes into the cache (a socket receiving straight into a
   * mount's memory, a backend copying its answer at the end), and a present
   * chunk may be written by native code without asking this stage. Marking
   * it present now would let such a write land first and the run's bytes
   * overwrite it. So the chunk stays the run's, and writers keep waiting for
   * the run. A reader with no buffer of its own (a slice's page fault) waits
   * for the run. Nothing is reported: the run reports the chunk when it lands.
   */
  async #overtake(chunk: number, into: Uint8Array): Promise<void> {
    await this.remote.readAt(into, this.layout.offsetOf(chunk));
  }

  /**
   * Takes `chunk`'s in-flight bit for this stage: false when native code holds
   * it. Taken, the chunk is checked again: native code marks a chunk present
   * before it gives the bit back, so one that turned present meanwhile is
   * given back too (false) — never fetched over what its user may be writing.
   */
  #takeBit(chunk: number): boolean {
    const inFlight = this.#options.inFlight;
    if (!inFlight) return true;
    if (!inFlight.set(chunk)) return false;
    if (!this.presence.has(chunk)) return true;
    inFlight.clear(chunk);
    return false;
  }

  #giveBackBit(chunk: number): void {
    this.#options.inFlight?.clear(chunk);
  }

  /**
   * Waits while native code holds `chunk` (its bit set by someone else, no
   * fetch of ours): it ends with the chunk present or handed back to us.
   * Polled: contention is rare, and no lost notice can leave a waiter behind.
   */
  async #nativeFetch(chunk: number): Promise<void> {
    const inFlight = this.#options.inFlight;
    while (inFlight?.has(chunk) && !this.presence.has(chunk) && !this.#pending.has(chunk)) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  /** Runs `operation` as the one pending operation of `chunk`. */
  #claim(chunk: number, operation: () => Promise<void>): Promise<void> {
    return this.#claimAll(chunk, 1, false, operation);
  }

  /** Runs `operation` as the one pending operation of `count` chunks from `first` (registered at once; their bits taken). */
  async #claimAll(first: number, count: number, run: boolean, operation: () => Promise<void>): Promise<void> {
    const running = operation();
    if (run) this.#runs.add(running);
    for (let chunk = first; chunk < first + count; chunk++) this.#pending.set(chunk, running);
    try {
      await running;
    } finally {
      for (let chunk = first; chunk < first + count; chunk++) {
        if (this.#pending.get(chunk) === running) {
          this.#pending.delete(chunk);
          this.#giveBackBit(chunk);
        }
      }
    }
  }
}
