/**
 * Reuses large reply buffers. A fresh multi-MiB Buffer is a new mapping whose
 * pages fault in on first touch and are unmapped again after GC; on this kind
 * of VM that costs more than the copy itself, so the server keeps a few
 * buffers per power-of-two size class and hands them out again once the socket
 * has taken their bytes.
 */
export class BufferPool {
  readonly #free = new Map<number, Buffer[]>();
  /** Memory this pool handed out; anything else passed to release is ignored. */
  readonly #owned = new WeakSet<ArrayBufferLike>();
  readonly #maxPooledBytes: number;
  #pooledBytes = 0;

  constructor(maxPooledBytes = 128 * 1024 * 1024) {
    this.#maxPooledBytes = maxPooledBytes;
  }

  /** A buffer of exactly `size` bytes (contents undefined). Small sizes come from Node's own pool. */
  get(size: number): Buffer {
    if (size < 64 * 1024) return Buffer.allocUnsafe(size);
    const capacity = 2 ** Math.ceil(Math.log2(size));
    const list = this.#free.get(capacity);
    const whole = list?.pop();
    if (whole) {
      this.#pooledBytes -= capacity;
      return whole.subarray(0, size);
    }
    const fresh = Buffer.allocUnsafeSlow(capacity);
    this.#owned.add(fresh.buffer);
    return fresh.subarray(0, size);
  }

  /** Gives a buffer from `get` back once nothing reads it any more. */
  release(buffer: Buffer): void {
    const capacity = buffer.buffer.byteLength;
    if (!this.#owned.has(buffer.buffer) || buffer.byteOffset !== 0) return;
    if (this.#pooledBytes + capacity > this.#maxPooledBytes) return;
    const whole = Buffer.from(buffer.buffer, 0, capacity);
    let list = this.#free.get(capacity);
    if (!list) {
      list = [];
      this.#free.set(capacity, list);
    }
    list.push(whole);
    this.#pooledBytes += capacity;
  }
}
