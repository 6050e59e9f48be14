import type { Backend, Extent } from "../backend.js";

/**
 * A pipeline stage: a Backend that wraps another Backend and forwards whatever
 * it does not change, the way nbdkit filters stack on plugins. Subclasses
 * override the calls they intercept.
 */
export class Stage implements Backend {
  constructor(readonly inner: Backend) {}

  get size(): number {
    return this.inner.size;
  }

  get readOnly(): boolean {
    return this.inner.readOnly ?? false;
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
}

export type { Extent };
