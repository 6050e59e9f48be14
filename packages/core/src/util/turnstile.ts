import { type Deferred, deferred } from "./abort.js";

/**
 * Holds callers while closed and counts those inside, so that a change of
 * state can wait until everyone who came in before it has left.
 */
export class Turnstile {
  #closed: Deferred<void> | undefined;
  #inside = 0;
  #drained: Deferred<void> | undefined;

  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** From now on, callers of `pass` wait at the gate. */
  close(): void {
    this.#closed ??= deferred();
  }

  /** Lets everyone waiting in. */
  open(): void {
    const closed = this.#closed;
    this.#closed = undefined;
    closed?.resolve();
  }

  /** Resolves when the gate is open (at once if it is). */
  async whileClosed(): Promise<void> {
    // A loop, not a single wait: the gate may close again before this waiter runs.
    while (this.#closed) await this.#closed.promise;
  }

  /** Resolves once everyone inside now has left. */
  async drained(): Promise<void> {
    if (this.#inside === 0) return;
    this.#drained ??= deferred();
    await this.#drained.promise;
  }

  /** Waits while the gate is closed, then runs `operation` inside (`admit` may refuse it first). */
  async pass<T>(operation: () => Promise<T>, admit?: () => void): Promise<T> {
    // Counted inside at once when open (no await before): a close right after the call waits for it.
    while (this.#closed) await this.#closed.promise;
    admit?.();
    this.#inside++;
    try {
      return await operation();
    } finally {
      this.#inside--;
      if (this.#inside === 0 && this.#drained) {
        this.#drained.resolve();
        this.#drained = undefined;
      }
    }
  }
}
