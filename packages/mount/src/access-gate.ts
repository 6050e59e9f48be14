import { type Backend, type Extent, R3mapError, Stage, Turnstile } from "@r3map/core";

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
  readonly #gate = new Turnstile();

  constructor(inner: Backend) {
    super(inner);
  }

  get access(): Access {
    return this.#access;
  }

  /** Sets the access; resolves once the requests that were inside have finished. */
  async set(access: Access): Promise<void> {
    this.#access = access;
    if (access === "locked") this.#gate.close();
    else this.#gate.open();
    await this.#gate.drained();
  }

  /** Resolves when the mount is not locked (at once if it is not). */
  whileLocked(): Promise<void> {
    return this.#gate.whileClosed();
  }

  override readAt(buffer: Uint8Array, offset: number): Promise<void> {
    return this.#gate.pass(() => this.inner.readAt(buffer, offset));
  }

  override writeAt(buffer: Uint8Array, offset: number): Promise<void> {
    return this.#write(() => this.inner.writeAt(buffer, offset));
  }

  protected override trimRange(offset: number, length: number): Promise<void> {
    return this.#write(() => super.trimRange(offset, length));
  }

  protected override zeroRange(offset: number, length: number): Promise<void> {
    return this.#write(() => super.zeroRange(offset, length));
  }

  protected override rangeStatus(offset: number, length: number): Promise<Extent[]> {
    return this.#gate.pass(() => super.rangeStatus(offset, length));
  }

  #write(operation: () => Promise<void>): Promise<void> {
    return this.#gate.pass(operation, () => {
      if (this.#access === "read-only") {
        throw new R3mapError(
          "ERR_READ_ONLY",
          "the mount refuses writes now (its migration's last round has run)",
          {
            errno: "EROFS",
          },
        );
      }
    });
  }
}
