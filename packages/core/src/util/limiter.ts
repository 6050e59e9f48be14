import { R3mapError } from "../errors.js";

interface Waiter {
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * Bounds how many operations run at once; the rest wait in arrival order.
 * Keeps a large request (thousands of chunks) from opening thousands of
 * network requests at once.
 */
export class Limiter {
  #running = 0;
  readonly #waiting: Waiter[] = [];

  constructor(readonly limit: number) {}

  get running(): number {
    return this.#running;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /** Runs `operation` when a slot is free; a `signal` that aborts while waiting rejects with ERR_ABORTED. */
  async run<T>(operation: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.#running >= this.limit) await this.#wait(signal);
    else this.#running++;
    try {
      return await operation();
    } finally {
      const next = this.#waiting.shift();
      // The slot passes straight to the next waiter, so nobody can overtake it.
      if (next) next.resolve();
      else this.#running--;
    }
  }

  #wait(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new R3mapError("ERR_ABORTED", "the call was aborted while waiting for a free slot"));
        return;
      }
      const onAbort = () => {
        const index = this.#waiting.indexOf(waiter);
        if (index >= 0) this.#waiting.splice(index, 1);
        reject(new R3mapError("ERR_ABORTED", "the call was aborted while waiting for a free slot"));
      };
      const waiter: Waiter = {
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        reject,
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }
}
