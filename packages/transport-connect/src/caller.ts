import type { DescService } from "@bufbuild/protobuf";
import { type CallOptions, type Client, Code, ConnectError } from "@connectrpc/connect";
import { delay, Limiter, R3mapError } from "@r3map/core";
import { fromConnectError, overloaded } from "./errors.js";
import type { SessionPool } from "./session-pool.js";

/**
 * When a failed call may be sent again:
 * - `idempotent`: after any transient failure (unavailable, connection reset);
 * - `unsent`: only when the request provably never reached the server
 *   (connection refused, name not resolved);
 * - `never`.
 */
export type RetryMode = "idempotent" | "unsent" | "never";

export interface CallerOptions {
  /** Calls in flight at once over the whole pool (default 64). */
  maxConcurrency?: number;
  /** Deadline of each call in milliseconds (default 30000; 0 for none). */
  timeoutMs?: number;
  /** Extra attempts after a retryable failure (default 3). */
  retries?: number;
  /** First pause between attempts, doubled each time up to 2 s (default 50 ms). */
  retryDelayMs?: number;
  /** How long `close()` lets running calls finish before cutting them (default 5000 ms). */
  closeGraceMs?: number;
}

export interface PerCallOptions {
  /** Aborts the call; it then fails with ERR_ABORTED. */
  signal?: AbortSignal;
}

const TRANSIENT = new Set([Code.Unavailable, Code.Aborted]);
/** How long a call without a deadline keeps asking a server that refuses it for load. */
const DEFAULT_OVERLOAD_PATIENCE_MS = 30_000;
const NEVER_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"]);

function neverSent(error: unknown): boolean {
  for (let cause = error, depth = 0; cause instanceof Error && depth < 8; cause = cause.cause, depth++) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === "string" && NEVER_SENT.has(code)) return true;
  }
  return false;
}

/**
 * A call this side did not cancel but that ended as CANCELED was cut by the
 * peer or the network (a reset stream, a server that shut down): unavailable.
 */
function remoteCut(error: unknown, signal: AbortSignal | undefined): unknown {
  const connectError = ConnectError.from(error);
  if (connectError.code !== Code.Canceled || signal?.aborted) return error;
  return new ConnectError(
    `the call was cut off by the server or the network (${connectError.rawMessage})`,
    Code.Unavailable,
    connectError.metadata,
    undefined,
    error,
  );
}

function retryable(error: unknown, mode: RetryMode): boolean {
  if (mode === "never") return false;
  if (!(error instanceof ConnectError) || !TRANSIENT.has(error.code)) return false;
  return mode === "idempotent" || neverSent(error);
}

/**
 * Sends calls over a session pool with bounded concurrency, a deadline per
 * call, retries where they are safe, and typed errors.
 */
export class Caller {
  readonly #limiter: Limiter;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #retryDelayMs: number;
  readonly #closeGraceMs: number;
  readonly #inFlight = new Set<Promise<unknown>>();
  readonly #streams = new Set<AbortController>();
  #closed = false;

  constructor(
    readonly pool: SessionPool,
    options: CallerOptions = {},
  ) {
    const concurrency = options.maxConcurrency ?? 64;
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `maxConcurrency must be a positive integer, got ${concurrency}`,
      );
    }
    this.#limiter = new Limiter(concurrency);
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#retries = options.retries ?? 3;
    this.#retryDelayMs = options.retryDelayMs ?? 50;
    this.#closeGraceMs = options.closeGraceMs ?? 5000;
  }

  get closed(): boolean {
    return this.#closed;
  }

  assertOpen(what: string): void {
    if (this.#closed)
      throw new R3mapError(
        "ERR_CLOSED",
        `${what}: the connection to the server is closed; open a new client`,
      );
  }

  /** Deadline and signal for one attempt (by default the whole `timeoutMs`). */
  callOptions(signal: AbortSignal | undefined, timeoutMs = this.#timeoutMs): CallOptions {
    return {
      ...(timeoutMs > 0 ? { timeoutMs } : {}),
      ...(signal ? { signal } : {}),
    };
  }

  /** Runs one logical call (`what` names it in errors), retrying per `mode`. */
  call<S extends DescService, T>(
    service: S,
    what: string,
    mode: RetryMode,
    send: (client: Client<S>, options: CallOptions) => Promise<T>,
    perCall: PerCallOptions = {},
  ): Promise<T> {
    // One deadline for the call: each attempt gets what is left of it.
    const deadline = this.#timeoutMs > 0 ? performance.now() + this.#timeoutMs : Number.POSITIVE_INFINITY;
    const left = () =>
      deadline === Number.POSITIVE_INFINITY ? 0 : Math.max(1, Math.ceil(deadline - performance.now()));
    const run = (async () => {
      this.assertOpen(what);
      // A server that refuses the call for load is asked again until the call's deadline.
      const giveUpAt = Date.now() + (this.#timeoutMs > 0 ? this.#timeoutMs : DEFAULT_OVERLOAD_PATIENCE_MS);
      let refusals = 0;
      for (let attempt = 0; ; attempt++) {
        try {
          return await this.#limiter.run(
            () => this.pool.use(service, (client) => send(client, this.callOptions(perCall.signal, left()))),
            perCall.signal,
          );
        } catch (caught) {
          if (caught instanceof R3mapError) throw caught;
          if (this.#closed && ConnectError.from(caught).code === Code.Canceled) {
            throw new R3mapError("ERR_CLOSED", `${what}: the client was closed while the call ran`, {
              cause: caught,
            });
          }
          const error = remoteCut(caught, perCall.signal);
          if (this.#closed || perCall.signal?.aborted) throw fromConnectError(error, what);
          if (overloaded(error)) {
            // Nothing of the call ran; a short, jittered wait keeps many callers from coming back together.
            const pause = Math.min(500, 10 * 2 ** Math.min(refusals++, 6)) * (0.5 + Math.random());
            if (Date.now() + pause > giveUpAt) throw fromConnectError(error, what);
            attempt--;
            await delay(pause, perCall.signal);
            continue;
          }
          if (attempt >= this.#retries || !retryable(error, mode) || performance.now() >= deadline) {
            throw fromConnectError(error, what);
          }
          await delay(Math.min(2000, this.#retryDelayMs * 2 ** attempt), perCall.signal);
        }
      }
    })();
    this.#inFlight.add(run);
    const forget = () => this.#inFlight.delete(run);
    run.then(forget, forget);
    return run;
  }

  /**
   * Runs a server-streaming call and yields its messages. Streams are not
   * retried (part of the data was delivered) and do not hold a concurrency
   * slot (a progress watch lasts for hours); `close()` ends them.
   */
  async *stream<S extends DescService, T>(
    service: S,
    what: string,
    open: (client: Client<S>, options: CallOptions) => AsyncIterable<T>,
    perCall: PerCallOptions = {},
    { deadline = true }: { deadline?: boolean } = {},
  ): AsyncGenerator<T> {
    this.assertOpen(what);
    const stop = new AbortController();
    const signal = perCall.signal ? AbortSignal.any([perCall.signal, stop.signal]) : stop.signal;
    this.#streams.add(stop);
    try {
      const options = deadline ? this.callOptions(signal) : { signal };
      const messages = await this.pool.use(service, async (client) => open(client, options));
      for await (const message of messages) yield message;
    } catch (error) {
      if (stop.signal.aborted)
        throw new R3mapError("ERR_CLOSED", `${what}: the client was closed`, { cause: error });
      throw fromConnectError(remoteCut(error, signal), what);
    } finally {
      this.#streams.delete(stop);
      // Leaving the loop early (break, return) cancels the call on the server.
      stop.abort();
    }
  }

  /**
   * Refuses new calls, ends streams, lets running calls finish for up to
   * `closeGraceMs`, then closes the connections (calls still running then
   * fail with ERR_CLOSED).
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const stream of this.#streams) stream.abort();
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.#closeGraceMs);
    });
    await Promise.race([Promise.allSettled([...this.#inFlight]), grace]);
    clearTimeout(timer);
    this.pool.close();
  }
}
