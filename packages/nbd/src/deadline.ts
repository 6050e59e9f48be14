/**
 * The time left for one request across its attempts. A request that is not
 * answered by then fails with the error `expired` makes; 0 ms means no
 * deadline.
 */
export class Deadline {
  readonly #at: number;

  constructor(
    timeoutMs: number,
    readonly expired: (cause?: unknown) => Error,
  ) {
    this.#at = timeoutMs > 0 ? performance.now() + timeoutMs : Number.POSITIVE_INFINITY;
  }

  /** Milliseconds left (at least 1 while any is left; 0 for no deadline). */
  remaining(): number {
    if (this.#at === Number.POSITIVE_INFINITY) return 0;
    const left = Math.ceil(this.#at - performance.now());
    if (left <= 0) throw this.expired();
    return left;
  }

  /** `work`, or the deadline's error if it passes first (`work` goes on: a reconnect others may use). */
  async race<T>(work: Promise<T>): Promise<T> {
    if (this.#at === Number.POSITIVE_INFINITY) return work;
    const left = this.remaining();
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.expired()), left);
    });
    try {
      return await Promise.race([work, expired]);
    } finally {
      clearTimeout(timer);
    }
  }
}
