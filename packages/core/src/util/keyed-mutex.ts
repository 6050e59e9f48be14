/**
 * Mutual exclusion per key (a chunk index), holding memory only for keys that
 * are locked right now. Waiters are served in arrival order.
 */
export class KeyedMutex {
  readonly #tails = new Map<number, Promise<void>>();

  async run<T>(key: number, task: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key);
    let release!: () => void;
    const current = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous ? previous.then(() => current) : current;
    this.#tails.set(key, tail);
    try {
      if (previous) await previous;
      return await task();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }

  /** True while some task holds or waits for `key`. */
  isLocked(key: number): boolean {
    return this.#tails.has(key);
  }
}
