/**
 * A barrier a test opens and closes, to hold operations at a chosen point
 * (a remote's reads, a task's start) and so provoke a race deterministically
 * instead of hoping a delay makes it happen. Open when created. Waiters pass
 * in arrival order.
 *
 * ```ts
 * remote.readGate.close();
 * const read = stage.readAt(buffer, 0);
 * await waitFor(() => remote.readGate.waiting === 1); // the fetch is in flight, held
 * // … race something against it …
 * remote.readGate.open();
 * ```
 */
export class Gate {
  /** Callers that may still pass without waiting (Infinity while open). */
  #allowance = Number.POSITIVE_INFINITY;
  readonly #waiters: Array<() => void> = [];
  /** Callers that have passed. */
  passed = 0;

  /** Callers held at the gate now. */
  get waiting(): number {
    return this.#waiters.length;
  }

  get isOpen(): boolean {
    return this.#allowance === Number.POSITIVE_INFINITY;
  }

  /** Holds every caller from now on (those already past are not affected). */
  close(): void {
    this.#allowance = 0;
  }

  /** Lets every waiting and future caller pass. */
  open(): void {
    this.allow(Number.POSITIVE_INFINITY);
  }

  /** Lets `count` more callers pass — the waiting ones first — then holds the rest. */
  allow(count: number): void {
    this.#allowance = count;
    while (this.#allowance > 0 && this.#waiters.length > 0) {
      this.#allowance--;
      this.#waiters.shift()!();
    }
  }

  /** Resolves when the caller may go on. */
  async pass(): Promise<void> {
    if (this.#allowance > 0) {
      this.#allowance--;
    } else {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    this.passed++;
  }
}
