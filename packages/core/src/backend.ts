import { checkRange } from "./chunk-layout.js";
import type { DigestSource } from "./digest.js";
import { R3mapError } from "./errors.js";

/** A run of bytes with the same allocation state, as NBD's `base:allocation` reports it. */
export interface Extent {
  offset: number;
  length: number;
  /** Reads as zeros. */
  zero: boolean;
  /** Not allocated in the store (a hole); implies `zero` for r3map backends. */
  hole: boolean;
}

/**
 * An NBD connection handed over to native code, which then speaks the
 * transmission phase itself (a device reading misses from the server on its
 * own threads): the socket, negotiated for simple replies, and what requests
 * on it must respect. Whoever takes it dups the descriptor and destroys the
 * socket.
 */
export interface NbdHandOff {
  /** A plain TCP or UNIX socket (native code does not speak TLS). */
  socket: import("node:net").Socket;
  /** A request with no answer after this long fails the connection (0: 30 s). */
  timeoutMs: number;
  /** Offsets and lengths of requests must be multiples of this. */
  minimumBlockSize: number;
  /** Requests must not be longer. */
  maximumBlockSize: number;
}

/**
 * Everything that stores bytes. Offsets and lengths are in bytes.
 *
 * - `readAt` fills the whole of `buffer` from `offset` or throws; a region that
 *   was never written reads as zeros.
 * - `writeAt` stores the whole of `buffer` at `offset` or throws.
 * - Requests past `size` throw `ERR_OUT_OF_RANGE`; a closed backend throws `ERR_CLOSED`.
 * - `sync` makes earlier writes durable in the store; `close` syncs what the
 *   backend buffers, releases resources and is idempotent.
 *
 * Optional capabilities are declared by implementing the method; callers test
 * for the method, they never probe by calling.
 */
export interface Backend {
  readonly size: number;
  /** Writes are refused with `ERR_READ_ONLY`. */
  readonly readOnly?: boolean;
  readAt(buffer: Uint8Array, offset: number): Promise<void>;
  writeAt(buffer: Uint8Array, offset: number): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
  /**
   * Reads and writes of any offset and length are served by the store itself
   * at no extra cost — no read-modify-write of a larger unit (memory, files,
   * a directory of chunk files, NBD with a one-byte minimum block size). A
   * mount then passes a partial chunk through as what it is; stores keyed by
   * chunk (Redis, S3, Cassandra) leave it undeclared and get whole chunks.
   */
  readonly byteRanges?: boolean;
  /** Discards a range; afterwards it reads as zeros. */
  readonly trim?: ((offset: number, length: number) => Promise<void>) | undefined;
  /** Writes zeros to a range without sending them. */
  readonly writeZeroes?: ((offset: number, length: number) => Promise<void>) | undefined;
  /** Reports which parts of a range are allocated or known to be zero. */
  readonly blockStatus?: ((offset: number, length: number) => Promise<Extent[]>) | undefined;
  /**
   * A new connection to the same resource, negotiated for native code to
   * speak NBD on (an NBD client without TLS); undefined when it cannot.
   * Stages never pass it through: bytes read on it would bypass them, so a
   * remote under a filter is read through the filter only.
   */
  readonly handOffConnection?: (() => Promise<NbdHandOff | undefined>) | undefined;
  /**
   * Per-chunk digests computed where the bytes are (a server hashing its own
   * copy), so that comparing two copies moves digests, not data. Stages never
   * pass it through: a stage may change the bytes the digests are of.
   */
  readonly digests?: DigestSource | undefined;
  /**
   * Writes several ranges at once, as that many `writeAt` calls would
   * (ascending, not overlapping): for a remote, one request instead of one per
   * range — a delta sync's scattered chunks. Stages never pass it through.
   */
  readonly writeScattered?: ((pieces: readonly ScatteredPiece[]) => Promise<void>) | undefined;
}

/** Bytes to write at an offset (see `Backend.writeScattered`). */
export interface ScatteredPiece {
  offset: number;
  data: Uint8Array;
}

/**
 * Base for backends that own their bytes: checks ranges, refuses calls after
 * close, makes close idempotent, and leaves the storage to three methods.
 */
/**
 * The backend's own memory for `[offset, offset + length)` when it can lend
 * it (a `MemoryBackend` whose segment holds the whole range), else undefined:
 * data can then be received into it or sent from it without a copy.
 */
export function memoryView(backend: Backend, offset: number, length: number): Uint8Array | undefined {
  const view = (backend as { view?: (offset: number, length: number) => Uint8Array | undefined }).view;
  return typeof view === "function" ? view.call(backend, offset, length) : undefined;
}

export abstract class StorageBackend implements Backend {
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(
    readonly size: number,
    readonly readOnly = false,
  ) {}

  protected abstract read(buffer: Uint8Array, offset: number): Promise<void> | void;
  protected abstract write(buffer: Uint8Array, offset: number): Promise<void> | void;
  protected abstract flush(): Promise<void> | void;
  protected abstract release(): Promise<void> | void;

  get closed(): boolean {
    return this.#closed;
  }

  async readAt(buffer: Uint8Array, offset: number): Promise<void> {
    this.assertOpen();
    checkRange(this.size, offset, buffer.length);
    await this.read(buffer, offset);
  }

  async writeAt(buffer: Uint8Array, offset: number): Promise<void> {
    this.assertOpen();
    if (this.readOnly) throw new R3mapError("ERR_READ_ONLY", "this backend was opened read-only");
    checkRange(this.size, offset, buffer.length);
    await this.write(buffer, offset);
  }

  async sync(): Promise<void> {
    this.assertOpen();
    await this.flush();
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        if (!this.readOnly) await this.flush();
      } finally {
        this.#closed = true;
        await this.release();
      }
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  protected assertOpen(): void {
    if (this.#closed || this.#closing)
      throw new R3mapError("ERR_CLOSED", `${this.constructor.name} is closed`);
  }
}
