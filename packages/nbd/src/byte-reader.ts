import type { Duplex } from "node:stream";
import { R3mapError } from "@r3map/core";

interface Waiter {
  target: Uint8Array;
  filled: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

/**
 * Reads exact byte counts from a stream without unbounded buffering.
 *
 * Bytes that arrive while nobody asks are kept up to `highWater`, then the
 * stream is paused, so a peer that sends faster than we consume is held back
 * by TCP flow control instead of filling our memory. A pending read larger
 * than `highWater` is filled straight into its destination as data arrives.
 */
export class ByteReader {
  readonly #stream: Duplex;
  readonly #highWater: number;
  readonly #chunks: Buffer[] = [];
  #buffered = 0;
  #received = 0;
  #waiter: Waiter | undefined;
  #skipping = 0;
  #skipDone: (() => void) | undefined;
  #failure: Error | undefined;
  #attached = false;

  readonly #allocate: (size: number) => Buffer;

  /** `allocate` supplies buffers for reads that span several received chunks (a pool, to avoid fresh mappings). */
  constructor(
    stream: Duplex,
    highWater = 1024 * 1024,
    allocate: (size: number) => Buffer = Buffer.allocUnsafe,
  ) {
    this.#stream = stream;
    this.#highWater = highWater;
    this.#allocate = allocate;
    this.attach();
  }

  /** Bytes received and not yet consumed. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Bytes received since the start, consumed or not: progress, for a watchdog. */
  get received(): number {
    return this.#received;
  }

  /** Bytes of a message that has started to arrive: received and not consumed, or already in the pending read. */
  get holding(): number {
    return this.#buffered + (this.#waiter?.filled ?? 0);
  }

  /** Set once the stream ended or failed; later reads reject with it. */
  get failure(): Error | undefined {
    return this.#failure;
  }

  #onData = (chunk: Buffer): void => {
    this.#received += chunk.length;
    if (this.#skipping > 0) {
      const dropped = Math.min(this.#skipping, chunk.length);
      this.#skipping -= dropped;
      chunk = chunk.subarray(dropped);
      if (this.#skipping === 0) this.#finishSkip();
      if (chunk.length === 0) return;
    }
    const waiter = this.#waiter;
    if (waiter && this.#buffered === 0) {
      const n = Math.min(chunk.length, waiter.target.length - waiter.filled);
      waiter.target.set(chunk.subarray(0, n), waiter.filled);
      waiter.filled += n;
      chunk = chunk.subarray(n);
      if (waiter.filled === waiter.target.length) {
        this.#waiter = undefined;
        waiter.resolve();
      }
      if (chunk.length === 0) return;
    }
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    if (this.#waiter) this.#fillWaiter();
    if (this.#buffered >= this.#highWater && !this.#waiter) this.#stream.pause();
  };

  /** Feeds bytes received outside `'data'` events (a socket read with `onread`; see SocketInput). */
  push(chunk: Buffer): void {
    this.#onData(chunk);
  }

  #onEnd = (): void => this.#fail(new R3mapError("ERR_REMOTE_UNREACHABLE", "the peer closed the connection"));
  #onError = (error: Error): void => this.#fail(error);

  #fail(error: Error): void {
    if (this.#failure) return;
    const midFrame = (this.#waiter !== undefined && this.#waiter.filled > 0) || this.#buffered > 0;
    this.#failure = midFrame
      ? new R3mapError(
          "ERR_PROTOCOL",
          "the peer closed the connection in the middle of a message (truncated frame)",
          {
            cause: error,
          },
        )
      : error;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(this.#failure);
    if (this.#skipDone) this.#finishSkip();
  }

  #finishSkip(): void {
    const done = this.#skipDone;
    this.#skipDone = undefined;
    done?.();
  }

  /** Moves buffered bytes into the pending waiter. */
  #fillWaiter(): void {
    const waiter = this.#waiter!;
    while (waiter.filled < waiter.target.length && this.#chunks.length > 0) {
      const head = this.#chunks[0]!;
      const n = Math.min(head.length, waiter.target.length - waiter.filled);
      waiter.target.set(head.subarray(0, n), waiter.filled);
      waiter.filled += n;
      this.#consume(n);
    }
    if (waiter.filled === waiter.target.length) {
      this.#waiter = undefined;
      waiter.resolve();
    }
  }

  #consume(n: number): void {
    this.#buffered -= n;
    while (n > 0) {
      const head = this.#chunks[0]!;
      if (head.length <= n) {
        this.#chunks.shift();
        n -= head.length;
      } else {
        this.#chunks[0] = head.subarray(n);
        n = 0;
      }
    }
    if (this.#buffered < this.#highWater && this.#attached) this.#stream.resume();
  }

  /** `n` bytes if they are already here (no copy when they sit in one chunk), else undefined. */
  tryTake(n: number): Buffer | undefined {
    if (this.#buffered < n || this.#waiter) return undefined;
    const head = this.#chunks[0];
    let out: Buffer;
    if (n === 0) return Buffer.alloc(0);
    if (head && head.length >= n) out = head.subarray(0, n);
    else {
      out = this.#allocate(n);
      let at = 0;
      for (const chunk of this.#chunks) {
        const m = Math.min(chunk.length, n - at);
        chunk.copy(out, at, 0, m);
        at += m;
        if (at === n) break;
      }
    }
    this.#consume(n);
    return out;
  }

  /** Reads exactly `n` bytes. */
  async take(n: number): Promise<Buffer> {
    const ready = this.tryTake(n);
    if (ready) return ready;
    const out = this.#allocate(n);
    await this.takeInto(out);
    return out;
  }

  /** Fills `target` completely from the stream. */
  takeInto(target: Uint8Array): Promise<void> {
    if (this.#waiter) return Promise.reject(new Error("ByteReader: concurrent reads are not allowed"));
    if (this.#failure && this.#buffered < target.length) return Promise.reject(this.#failure);
    return new Promise<void>((resolve, reject) => {
      this.#waiter = { target, filled: 0, resolve, reject };
      this.#fillWaiter();
      if (this.#waiter && this.#attached) this.#stream.resume();
    });
  }

  /** Discards the next `n` bytes as they arrive, without buffering them. */
  skip(n: number): Promise<void> {
    const here = Math.min(n, this.#buffered);
    if (here > 0) this.#consume(here);
    if (here === n) return Promise.resolve();
    if (this.#failure) return Promise.reject(this.#failure);
    this.#skipping = n - here;
    return new Promise<void>((resolve, reject) => {
      this.#skipDone = () => (this.#failure ? reject(this.#failure) : resolve());
      this.#stream.resume();
    });
  }

  attach(): void {
    if (this.#attached) return;
    this.#attached = true;
    this.#stream.on("data", this.#onData);
    this.#stream.on("end", this.#onEnd);
    this.#stream.on("close", this.#onEnd);
    this.#stream.on("error", this.#onError);
  }

  /**
   * Stops reading from the stream (before handing it to TLS). Returns bytes
   * that were received but not consumed; for STARTTLS there must be none.
   */
  detach(): Buffer {
    this.#attached = false;
    this.#stream.off("data", this.#onData);
    this.#stream.off("end", this.#onEnd);
    this.#stream.off("close", this.#onEnd);
    this.#stream.off("error", this.#onError);
    this.#stream.pause();
    const rest = Buffer.concat(this.#chunks);
    this.#chunks.length = 0;
    this.#buffered = 0;
    return rest;
  }
}
