import type * as net from "node:net";
import type { ByteReader } from "./byte-reader.js";

/** Takes a socket's bytes; asked before every read where the next bytes should land. */
export interface ReceiveSink {
  /** The memory the next read fills (at most its length is read). */
  nextBuffer(): Uint8Array;
  /**
   * `n` bytes were read into the start of `buffer` — normally the latest
   * `nextBuffer()`, but an earlier one if the sink changed in between.
   * Returning false pauses the socket.
   */
  received(buffer: Uint8Array, n: number): boolean;
}

const STAGING_SIZE = 64 * 1024;

/**
 * Reads a plain TCP or UNIX socket with node's `onread` hook instead of
 * `'data'` events, so that whoever consumes the bytes picks each read's
 * destination: a READ reply's data is received by the kernel straight into
 * the caller's buffer (often a mount's cache), with no intermediate chunk, no
 * copy in JavaScript and no garbage per 64 KiB.
 *
 * The sink can change between protocol phases (handshake → transmission).
 */
export class SocketInput {
  #sink: ReceiveSink;

  constructor(sink: ReceiveSink) {
    this.#sink = sink;
  }

  set sink(sink: ReceiveSink) {
    this.#sink = sink;
  }

  /** The `onread` option for `net.connect`. */
  get onread(): net.OnReadOpts {
    return {
      buffer: () => this.#sink.nextBuffer(),
      callback: (n, buffer) => this.#sink.received(buffer, n),
    };
  }
}

/**
 * A sink for the handshake: reads into a reused staging buffer and hands
 * copies to a `ByteReader`, which keeps them as long as it needs.
 */
export class CopyIntoReader implements ReceiveSink {
  readonly #staging = Buffer.allocUnsafe(STAGING_SIZE);
  readonly #reader: ByteReader;

  constructor(reader: ByteReader) {
    this.#reader = reader;
  }

  nextBuffer(): Uint8Array {
    return this.#staging;
  }

  received(buffer: Uint8Array, n: number): boolean {
    this.#reader.push(Buffer.from(buffer.subarray(0, n)));
    return true; // the reader pauses the socket itself when it holds too much
  }
}

export { STAGING_SIZE };
