/** What a connection's watchdog looks at. */
export interface WatchdogProbe {
  /**
   * Counters that change whenever the client does something: bytes received,
   * replies it took, bytes the kernel accepted from our queue. Any change is
   * progress.
   */
  progress(): readonly number[];
  /** The client owes us: the rest of a request it started, or the reading of replies we queued. */
  waitingOnClient(): boolean;
  /** Nothing started, nothing outstanding. */
  idle(): boolean;
}

export interface WatchdogOptions {
  /** Ends a connection that owes us bytes or reads and makes no progress for this long. */
  stallTimeoutMs: number;
  /** Ends a connection that does nothing for this long; 0 = never. */
  idleTimeoutMs: number;
}

/**
 * Ends connections whose client stalls in the middle of a request (a WRITE
 * header followed by part of its payload and silence), stops reading its
 * replies, or (when asked) stays idle. Checks a few times per timeout, so a
 * stall is noticed between the timeout and 1.25 times it.
 */
export class Watchdog {
  readonly #probe: WatchdogProbe;
  readonly #options: WatchdogOptions;
  readonly #expire: (reason: "stall" | "idle") => void;
  #timer: NodeJS.Timeout | undefined;
  #last: readonly number[] = [];
  #lastProgressAt = Date.now();

  constructor(probe: WatchdogProbe, options: WatchdogOptions, expire: (reason: "stall" | "idle") => void) {
    this.#probe = probe;
    this.#options = options;
    this.#expire = expire;
  }

  start(): void {
    const { stallTimeoutMs, idleTimeoutMs } = this.#options;
    const shortest = idleTimeoutMs > 0 ? Math.min(stallTimeoutMs, idleTimeoutMs) : stallTimeoutMs;
    this.#last = this.#probe.progress();
    this.#lastProgressAt = Date.now();
    this.#timer = setInterval(() => this.#check(), Math.max(1, Math.floor(shortest / 4)));
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #check(): void {
    const now = Date.now();
    const progress = this.#probe.progress();
    if (progress.some((value, i) => value !== this.#last[i])) {
      this.#last = progress;
      this.#lastProgressAt = now;
      return;
    }
    const quiet = now - this.#lastProgressAt;
    const { stallTimeoutMs, idleTimeoutMs } = this.#options;
    if (quiet >= stallTimeoutMs && this.#probe.waitingOnClient()) {
      this.stop();
      this.#expire("stall");
    } else if (idleTimeoutMs > 0 && quiet >= idleTimeoutMs && this.#probe.idle()) {
      this.stop();
      this.#expire("idle");
    }
  }
}
