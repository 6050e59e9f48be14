/**
 * What the server holds in memory for its clients, in bytes and in requests.
 *
 * A request is counted from the moment its header is read until its reply has
 * been handed to the kernel: its payload while it is received and executed,
 * then its reply while it waits in the socket's queue. A connection that is
 * over its budget (or finds the server's spent) stops reading, so a client
 * that sends and never reads is held back by TCP flow control instead of
 * growing the server's memory.
 *
 * The server-wide budget counts data only (payloads and reply data): a
 * request without data never waits for it, so one client holding the
 * server's data budget cannot keep others from negotiating or flushing. What
 * such requests cost is bounded per connection by their number.
 */

/**
 * What one queued reply costs beyond its bytes: the Buffer object, the write
 * request and the stream's queue entry. About 300 bytes measured on Node 20;
 * counted generously so that a flood of tiny replies is bounded by its real
 * cost, not by its 16 bytes each.
 */
export const REPLY_OVERHEAD_BYTES = 512;

type Wake = () => void;

/** Bytes held for every connection of a server together. */
export class ServerBudget {
  #used = 0;
  readonly #waiting = new Set<Wake>();

  constructor(readonly maxBytes: number) {}

  get used(): number {
    return this.#used;
  }

  /** Whether `data` more bytes may be taken; the first taker always may, however large. */
  fits(data: number): boolean {
    return data === 0 || this.#used === 0 || this.#used + data <= this.maxBytes;
  }

  take(data: number): void {
    this.#used += data;
  }

  give(data: number): void {
    if (data === 0) return;
    this.#used -= data;
    for (const wake of [...this.#waiting]) wake();
  }

  /** Calls `wake` whenever bytes are given back, until the returned function is called. */
  watch(wake: Wake): () => void {
    this.#waiting.add(wake);
    return () => this.#waiting.delete(wake);
  }
}

export interface ConnectionLimits {
  /** Requests taken in and not yet answered (executing, or their reply unsent). */
  maxRequests: number;
  /** Their bytes: payloads, reply data and REPLY_OVERHEAD_BYTES each. */
  maxBytes: number;
}

/**
 * What one connection holds: requests taken in and not yet answered, and
 * their bytes — `data` each (payload or reply data) plus REPLY_OVERHEAD_BYTES.
 */
export class ConnectionBudget {
  #requests = 0;
  #bytes = 0;
  /** Requests answered so far (their reply handed to the kernel): progress for the stall watchdog. */
  #answered = 0;
  #wake: Wake | undefined;
  #closed = false;

  /** Without `server`, only this connection's limits apply (the handshake's replies). */
  constructor(
    readonly limits: ConnectionLimits,
    readonly server: ServerBudget = new ServerBudget(Number.POSITIVE_INFINITY),
  ) {}

  get requests(): number {
    return this.#requests;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get answered(): number {
    return this.#answered;
  }

  /**
   * Whether a request with `data` bytes may be taken in now. A connection
   * with nothing outstanding may always take one request (however large), as
   * long as the server has room: otherwise a request larger than the budget
   * could never run.
   */
  fits(data: number): boolean {
    if (this.#requests === 0) return this.server.fits(data);
    return (
      this.#requests < this.limits.maxRequests &&
      this.#bytes + data + REPLY_OVERHEAD_BYTES <= this.limits.maxBytes &&
      this.server.fits(data)
    );
  }

  take(data: number): void {
    this.#requests++;
    this.#bytes += data + REPLY_OVERHEAD_BYTES;
    this.server.take(data);
  }

  /** The request that held `data` bytes has been answered. */
  give(data: number): void {
    this.#requests--;
    this.#bytes -= data + REPLY_OVERHEAD_BYTES;
    this.#answered++;
    this.server.give(data);
    this.#wake?.();
  }

  /** Resolves once a request with `data` bytes fits, or the budget is closed (the connection ended). */
  async room(data: number): Promise<void> {
    while (!this.#closed && !this.fits(data)) {
      await new Promise<void>((resolve) => {
        const unwatch = this.server.watch(() => this.#wake?.());
        this.#wake = () => {
          this.#wake = undefined;
          unwatch();
          resolve();
        };
      });
    }
  }

  /** Ends any wait: the connection is over. */
  close(): void {
    this.#closed = true;
    this.#wake?.();
  }
}
