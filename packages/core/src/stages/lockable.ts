import { Turnstile } from "../util/turnstile.js";
import { type Extent, Stage } from "./stage.js";

/**
 * Holds I/O while locked — used while a migration finalizes, so no request
 * reaches a chunk whose owner is changing. `lock()` resolves once the requests
 * already inside the stage have finished; `unlock()` releases every waiter.
 */
export class LockableStage extends Stage {
  readonly #gate = new Turnstile();

  get locked(): boolean {
    return this.#gate.closed;
  }

  async lock(): Promise<void> {
    this.#gate.close();
    await this.#gate.drained();
  }

  unlock(): void {
    this.#gate.open();
  }

  override readAt(buffer: Uint8Array, offset: number): Promise<void> {
    return this.#gate.pass(() => this.inner.readAt(buffer, offset));
  }

  override writeAt(buffer: Uint8Array, offset: number): Promise<void> {
    return this.#gate.pass(() => this.inner.writeAt(buffer, offset));
  }

  override sync(): Promise<void> {
    return this.#gate.pass(() => this.inner.sync());
  }

  protected override trimRange(offset: number, length: number): Promise<void> {
    return this.#gate.pass(() => super.trimRange(offset, length));
  }

  protected override zeroRange(offset: number, length: number): Promise<void> {
    return this.#gate.pass(() => super.zeroRange(offset, length));
  }

  protected override rangeStatus(offset: number, length: number): Promise<Extent[]> {
    return this.#gate.pass(() => super.rangeStatus(offset, length));
  }
}
