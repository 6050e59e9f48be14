import type { Backend, Extent } from "../backend.js";

/**
 * A pipeline stage: a Backend that wraps another Backend and forwards whatever
 * it does not change, the way nbdkit filters stack on plugins. Subclasses
 * override the calls they intercept.
 *
 * The optional capabilities (`trim`, `writeZeroes`, `blockStatus`) pass
 * through too: a stage declares one exactly when the backend below it does,
 * so a stack never silently loses what its store can do. A subclass that
 * changes how a capability behaves overrides `trimRange`, `zeroRange` or
 * `rangeStatus`; one that can always offer a capability (by writing zeros,
 * say) sets the property itself in its constructor.
 */
export class Stage implements Backend {
  trim: Backend["trim"];
  writeZeroes: Backend["writeZeroes"];
  blockStatus: Backend["blockStatus"];

  constructor(readonly inner: Backend) {
    this.trim = inner.trim && ((offset, length) => this.trimRange(offset, length));
    this.writeZeroes = inner.writeZeroes && ((offset, length) => this.zeroRange(offset, length));
    this.blockStatus = inner.blockStatus && ((offset, length) => this.rangeStatus(offset, length));
  }

  get size(): number {
    return this.inner.size;
  }

  get readOnly(): boolean {
    return this.inner.readOnly ?? false;
  }

  /** As the inner backend: a stage that changes the unit of its requests says otherwise. */
  get byteRanges(): boolean {
    return this.inner.byteRanges ?? false;
  }

  readAt(buffer: Uint8Array, offset: number): Promise<void> {
    return this.inner.readAt(buffer, offset);
  }

  writeAt(buffer: Uint8Array, offset: number): Promise<void> {
    return this.inner.writeAt(buffer, offset);
  }

  sync(): Promise<void> {
    return this.inner.sync();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** Called for `trim` (declared only when the inner backend has it). */
  protected trimRange(offset: number, length: number): Promise<void> {
    return this.inner.trim!(offset, length);
  }

  /** Called for `writeZeroes` (declared only when the inner backend has it). */
  protected zeroRange(offset: number, length: number): Promise<void> {
    return this.inner.writeZeroes!(offset, length);
  }

  /** Called for `blockStatus` (declared only when the inner backend has it). */
  protected rangeStatus(offset: number, length: number): Promise<Extent[]> {
    return this.inner.blockStatus!(offset, length);
  }
}

export type { Extent };
