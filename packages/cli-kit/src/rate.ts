/**
 * A rate over a sliding window: feed it a growing total (bytes done) and it
 * tells the current speed and, given what remains, the time left.
 */
export class RateMeter {
  readonly #windowMs: number;
  readonly #now: () => number;
  readonly #samples: Array<{ at: number; value: number }> = [];

  constructor(windowMs = 5000, now: () => number = Date.now) {
    this.#windowMs = windowMs;
    this.#now = now;
  }

  /** Records the total reached now. */
  sample(value: number): void {
    const at = this.#now();
    this.#samples.push({ at, value });
    // Keep one sample older than the window, so the window is always spanned.
    while (this.#samples.length > 2 && this.#samples[1]!.at <= at - this.#windowMs) this.#samples.shift();
  }

  /** Units per second over the window (0 until two samples span some time). */
  get perSecond(): number {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (!first || !last || last.at <= first.at) return 0;
    return Math.max(0, ((last.value - first.value) * 1000) / (last.at - first.at));
  }

  /** Seconds until `remaining` more units are done at the current rate; undefined while the rate is 0. */
  secondsLeft(remaining: number): number | undefined {
    if (remaining <= 0) return 0;
    const rate = this.perSecond;
    return rate > 0 ? remaining / rate : undefined;
  }
}
