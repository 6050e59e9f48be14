import { type Backend, R3mapError, Stage } from "@r3map/core";

/**
 * A backend served read-only (`serve --read-only`): writes are refused with
 * ERR_READ_ONLY before they reach it, trim and write-zeroes are not offered,
 * and it says `readOnly` so that NBD and Connect advertise it. Reads, block
 * status and sync pass through.
 */
export class ReadOnlyBackend extends Stage {
  constructor(inner: Backend) {
    super(inner);
    this.trim = undefined;
    this.writeZeroes = undefined;
  }

  override get readOnly(): boolean {
    return true;
  }

  override writeAt(): Promise<void> {
    return Promise.reject(new R3mapError("ERR_READ_ONLY", "this resource is served read-only"));
  }
}
