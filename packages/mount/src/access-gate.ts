import { type Backend, type Deferred, deferred, type Extent, R3mapError, Stage } from "@r3map/core";

/**
 * Who may use a mount right now:
 * - `open`: everyone;
 * - `read-only`: writes are refused with EROFS (a migration's seeder after
 *   its last round: what is written now would not be migrated);
 * - `locked`: reads and writes wait, nothing fails (a migration's leecher
 *   until its data is final).
 */
export type Access = "open" | "read-only" | "locked";

/**
 * The engine's front stage: applies the mount's `Access` to every request
 * that reaches the engine (devices forward everything to it while the mount
 * is not open). Changing the access waits for requests already inside, so
 * that after `set("read-only")` no write is still landing.
 */
export class AccessGate extends Stage {
  #access: Access = "open";
  #opened: Deferred<void> | undefined;
  #inside = 0;
  #drained: Deferred<void> | undefined;

  constructor(inner: Backend) {
    super(inner);
  }

  get access(): Access {
    return this.#access;
  }

  /** Sets the access; resolves once the requests that were inside have finished. */
  async set(access: Access): Promise<void> {
    this.#access = access;
    if (access === "locked") this.#opened ??= deferred();
    else {
      this.#opened?.resolve();
      this.#opened = undefined;
    }
    if (this.#inside === 0) return;
    this.#drained ??= deferred();
    await this.#drained.promise;
  }

  /** Resolves when the mount is not locked (at once if it is not). */
  async whileLocked(): Promise<void> {
    // A loop: the mount may be locked again before this waiter runs.
    while (this.#opened) await this.#opened.promise;
  }

  override readAt(buffer: Uint8Array, offset: number): Promise<void> {
    return this.#pass(false, () => this.inner.readAt(buffer, offset));
  }

  override writeAt(buffer: Uint8Array, offset: number): Promise<void> {
    return this.#pass(true, () => this.inner.writeAt(buffer, offset));
  }

  protected override trimRange(offset: number, length: number): Promise<void> {
    return this.#pass(true, () => super.trimRange(offset, length));
  }

  protected override zeroRange(offset: number, length: number): Promise<void> {
    return this.#pass(true, () => super.zeroRange(offset, length));
  }

  protected override rangeStatus(offset: number, length: number): Promise<Extent[]> {
    return this.#pass(false, () => super.rangeStatus(offset, length));
  }

  async #pass<T>(writes: boolean, operation: () => Promise<T>): Promise<T> {
    await this.whileLocked();
    if (writes && this.#access === "read-only") {
      throw new R3mapError(
        "ERR_READ_ONLY",
        "the mount refuses writes now (its migration's last round has run)",
        {
          errno: "EROFS",
        },
      );
    }
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
