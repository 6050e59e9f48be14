import { Code, ConnectError, createContextKey, type HandlerContext } from "@connectrpc/connect";
import { positiveInteger } from "./limits.js";

/**
 * Marks a RESOURCE_EXHAUSTED answer as the server's refusal to take the call
 * now (too many calls or bytes in flight): nothing ran, so a client may send
 * it again later, whatever the call.
 */
export const OVERLOADED_HEADER = "r3map-overloaded";

export interface CallLimitOptions {
  /** Calls running at once on one HTTP/2 connection (default 128). */
  maxCallsPerConnection?: number;
  /** Calls running at once on the whole server (default 1024). */
  maxCalls?: number;
  /**
   * Bytes the running calls hold, until the call's stream is closed: request
   * messages as they arrive (twice: Connect copies them once more), a
   * ReadAt's answer (three times: the data, the message, its envelope) and
   * a ReadStream's (four pieces). Default 128 MiB.
   */
  maxBytesInFlight?: number;
}

export const DEFAULT_CALL_LIMITS = {
  maxCallsPerConnection: 128,
  maxCalls: 1024,
  maxBytesInFlight: 128 * 1024 * 1024,
} as const satisfies Required<CallLimitOptions>;

/** Charges up to this size are never refused. */
const SMALL_BYTES = 8 * 1024;

/** A call the server took: what it holds until its stream closes. */
export class CallTicket {
  #bytes = 0;
  #released = false;
  /** Set by whoever serves the call: true while it waits for the client (to send the request, or to read the answer). */
  waitingOnClient: () => boolean = () => false;

  constructor(
    readonly limits: CallLimits,
    readonly connection: object,
  ) {}

  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Takes `bytes` more for this call, or throws RESOURCE_EXHAUSTED when the
   * server holds too much already. A call alone in holding bytes always gets
   * them: a limit below the largest message must not refuse every call.
   */
  reserve(bytes: number, what: string): void {
    if (this.#released) return;
    // A few KiB (a request without data) are counted but never refused: a
    // full budget must not stop a Sync or a GetInfo. Their total is bounded
    // by the number of calls.
    if (bytes > SMALL_BYTES && !this.limits.fits(bytes, this.#bytes)) {
      throw this.limits.overloaded(
        `${what}: the server holds ${this.limits.bytesInFlight} bytes for calls in flight (limit ${this.limits.options.maxBytesInFlight}); try again later`,
      );
    }
    this.#bytes += bytes;
    this.limits.take(bytes);
  }

  /** The call's stream closed: everything it held is given back. Idempotent. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.limits.end(this);
  }
}

/**
 * Admission control for a Connect server: calls in flight per connection and
 * overall, and the bytes they hold. Past a limit a call is answered
 * RESOURCE_EXHAUSTED (with OVERLOADED_HEADER) before anything of it runs.
 */
export class CallLimits {
  readonly options: Required<CallLimitOptions>;
  readonly #perConnection = new WeakMap<object, Set<CallTicket>>();
  #calls = 0;
  #bytes = 0;

  constructor(options: CallLimitOptions = {}) {
    this.options = {
      maxCallsPerConnection: positiveInteger(
        options.maxCallsPerConnection ?? DEFAULT_CALL_LIMITS.maxCallsPerConnection,
        "maxCallsPerConnection",
      ),
      maxCalls: positiveInteger(options.maxCalls ?? DEFAULT_CALL_LIMITS.maxCalls, "maxCalls"),
      maxBytesInFlight: positiveInteger(
        options.maxBytesInFlight ?? DEFAULT_CALL_LIMITS.maxBytesInFlight,
        "maxBytesInFlight",
      ),
    };
  }

  /** Calls running now. */
  get calls(): number {
    return this.#calls;
  }

  /** Bytes the running calls hold now. */
  get bytesInFlight(): number {
    return this.#bytes;
  }

  /** Calls running now on `connection`. */
  callsOn(connection: object): number {
    return this.#perConnection.get(connection)?.size ?? 0;
  }

  /** Whether a call on `connection` waits for its client: a connection that is silent then has stalled. */
  waitingOnClient(connection: object): boolean {
    for (const ticket of this.#perConnection.get(connection) ?? []) if (ticket.waitingOnClient()) return true;
    return false;
  }

  /** Takes a call arriving on `connection` (an HTTP/2 session), or says why not. */
  admit(connection: object): CallTicket | ConnectError {
    const here = this.callsOn(connection);
    if (here >= this.options.maxCallsPerConnection) {
      return this.overloaded(
        `this connection has ${here} calls in flight, the server's limit per connection; wait for some to finish`,
      );
    }
    if (this.#calls >= this.options.maxCalls) {
      return this.overloaded(`the server has ${this.#calls} calls in flight, its limit; try again later`);
    }
    const ticket = new CallTicket(this, connection);
    const tickets = this.#perConnection.get(connection) ?? new Set();
    tickets.add(ticket);
    this.#perConnection.set(connection, tickets);
    this.#calls++;
    return ticket;
  }

  /** Whether a call already holding `own` bytes may take `bytes` more. */
  fits(bytes: number, own = 0): boolean {
    return this.#bytes === own || this.#bytes + bytes <= this.options.maxBytesInFlight;
  }

  take(bytes: number): void {
    this.#bytes += bytes;
  }

  end(ticket: CallTicket): void {
    this.#bytes -= ticket.bytes;
    this.#calls--;
    const tickets = this.#perConnection.get(ticket.connection);
    tickets?.delete(ticket);
    if (tickets?.size === 0) this.#perConnection.delete(ticket.connection);
  }

  overloaded(message: string): ConnectError {
    return new ConnectError(message, Code.ResourceExhausted, { [OVERLOADED_HEADER]: "1" });
  }
}

/** Where a handler finds its call's ticket (absent when served by someone else's adapter). */
export const callTicketKey = createContextKey<CallTicket | undefined>(undefined, {
  description: "r3map call ticket",
});

/** Reserves the bytes a handler is about to allocate for its answer; see CallTicket.reserve. */
export function reserveAnswer(context: HandlerContext, bytes: number, what: string): void {
  context.values.get(callTicketKey)?.reserve(bytes, what);
}
