import { EventEmitter } from "node:events";

/**
 * An EventEmitter whose event names and listener arguments are checked by the
 * compiler. `Events` maps each event name to its argument tuple.
 */
export class TypedEmitter<Events extends { [K in keyof Events]: unknown[] }> {
  readonly #emitter = new EventEmitter();

  on<K extends keyof Events & string>(event: K, listener: (...args: Events[K]) => void): this {
    this.#emitter.on(event, listener as (...args: unknown[]) => void);
    return this;
  }

  once<K extends keyof Events & string>(event: K, listener: (...args: Events[K]) => void): this {
    this.#emitter.once(event, listener as (...args: unknown[]) => void);
    return this;
  }

  off<K extends keyof Events & string>(event: K, listener: (...args: Events[K]) => void): this {
    this.#emitter.off(event, listener as (...args: unknown[]) => void);
    return this;
  }

  listenerCount<K extends keyof Events & string>(event: K): number {
    return this.#emitter.listenerCount(event);
  }

  protected emit<K extends keyof Events & string>(event: K, ...args: Events[K]): void {
    if (this.#emitter.listenerCount(event) > 0) this.#emitter.emit(event, ...args);
  }
}

/** The state of a managed resource, as every mount and migration reports it. */
export interface Progress {
  chunksTotal: number;
  /** Chunks present locally (fetched, pulled or written). */
  chunksLocal: number;
  /** Bytes fetched from the remote (demand reads and background pulls). */
  bytesPulled: number;
  /** Bytes written back to the remote. */
  bytesPushed: number;
  /** Chunks changed locally and not yet pushed. */
  dirtyChunks: number;
  /** Remote fetches completed. */
  fetches: number;
  /** Mean duration of a remote fetch, in milliseconds (0 before the first). */
  meanFetchMs: number;
}
