import { type Deferred, deferred } from "../util/abort.js";
import { type Extent, Stage } from "./stage.js";

/**
 * Holds I/O while locked — used while a migration finalizes, so no request
 * reaches a chunk whose owner is changing. `lock()` resolves once the requests
 * already inside the stage have finished; `unlock()` releases every waiter.
 */
export class LockableStage extends Stage {
  #gate: Deferred<void> | undefined;
  #inFlight = 0;
  #drained: Deferred<void> | undefined;

  get locked(): boolean {
    return this.#gate !== undefined;
  }

  async lock(): Promise<void> {
    this.#gate ??= deferred();
    if (this.#inFlight === 0) return;
    this.#drained ??= deferred();
    await this.#drained.promise;
  }

  unlock(): void {
    const gate = this.#gate;
    this.#gate = undefined;
    gate?.resolve();
  }

  override readAt(buffer: Uint8Array, offset: number): Promise<void> {
    return this.#pass(() => this.inner.readAt(buffer, offset));
  }

  override writeAt(buffer: Uint8Array, offset: number): Promise<void> {
    return this.#pass(() => this.inner.writeAt(buffer, offset));
  }

  override sync(): Promise<void> {
    return this.#pass(() => this.inner.sync());
  }

  protected override trimRange(offset: number, length: number): Promise<void> {
    return this.#pass(() => super.trimRange(offset, length));
  }

  protected override zeroRange(offset: number, length: number): Promise<void> {
    return this.#pass(() => super.zeroRange(offset, length));
  }

  protected override rangeStatus(offset: number, length: number): Promise<Extent[]> {
    return this.#pass(() => super.rangeStatus(offset, length));
  }

  async #pass<T>(operation: () => Promise<T>): Promise<T> {
    // A loop, not a single wait: the stage may be locked again before this waiter runs.
    while (this.#gate) await this.#gate.promise;
    this.#inFlight++;
    try {
      return await operation();
    } finally {
      this.#inFlight--;
      if (this.#inFlight === 0 && this.#drained) {
        this.#drained.resolve();
        this.#drained = undefined;
      }
    }
  }
}
