/** Bounds how many operations run at once; the rest wait in arrival order. */
export class Limiter {
  #running = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(readonly limit: number) {}

  get running(): number {
    return this.#running;
  }

  async run<T>(operation: () => Promise<T>): Promise<T> {
    if (this.#running >= this.limit) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#running++;
    try {
      return await operation();
    } finally {
      const next = this.#waiting.shift();
      // The slot passes straight to the next waiter, so nobody can overtake it.
      if (next) next();
      else this.#running--;
    }
  }
}
