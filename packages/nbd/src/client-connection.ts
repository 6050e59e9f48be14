import type { Duplex } from "node:stream";
import { type ErrorCode, R3mapError } from "@r3map/core";
import type { ExportInfo, Negotiated } from "./client-handshake.js";
import { CMD, errnoName } from "./protocol.js";
import { type AwaitedReply, ReplyReceiver, type StatusDescriptor } from "./reply-receiver.js";
import { writeRequestHeader } from "./wire.js";

export type { StatusDescriptor };

interface Pending extends AwaitedReply {
  abandoned: boolean;
  timer: NodeJS.Timeout | undefined;
  resolve: (descriptors: StatusDescriptor[] | undefined) => void;
  reject: (error: Error) => void;
}

const WRITE_COMMANDS: ReadonlySet<number> = new Set([CMD.WRITE, CMD.WRITE_ZEROES, CMD.TRIM]);

/** The error a client raises for an NBD error reply. */
export function remoteError(errno: number, message: string, command: number, target: string): R3mapError {
  const name = errnoName(errno);
  const codes: Record<string, ErrorCode> = {
    EPERM: WRITE_COMMANDS.has(command) ? "ERR_READ_ONLY" : "ERR_PERMISSION",
    EINVAL: "ERR_INVALID_ARGUMENT",
    ENOSPC: "ERR_NO_SPACE",
    EOVERFLOW: "ERR_OUT_OF_RANGE",
    ENOTSUP: "ERR_NOT_SUPPORTED",
    ESHUTDOWN: "ERR_REMOTE_UNREACHABLE",
  };
  const detail = message ? `: ${message}` : "";
  return new R3mapError(codes[name] ?? "ERR_REMOTE_FAILED", `${target} answered ${name}${detail}`, {
    errno: name,
  });
}

/** The error of a request that got no reply within its deadline of `timeoutMs`. */
export function timeoutError(
  target: string,
  command: number,
  offset: number,
  length: number,
  timeoutMs: number,
  cause?: unknown,
): R3mapError {
  return new R3mapError(
    "ERR_TIMEOUT",
    `${target}: no reply to command ${command} at ${offset}+${length} within ${timeoutMs} ms`,
    cause === undefined ? {} : { cause },
  );
}

/**
 * One negotiated NBD connection in transmission phase: sends requests with
 * unique cookies and matches replies (in any order) back to them.
 */
export class NbdConnection {
  readonly info: ExportInfo;
  readonly #stream: Duplex;
  readonly #receiver: ReplyReceiver;
  readonly #target: string;
  readonly #timeoutMs: number;
  readonly #maxInFlight: number;
  readonly #pending = new Map<number, Pending>();
  readonly #waiting: Array<{ go: () => void; fail: (error: Error) => void }> = [];
  #nextCookie = 1;
  #failure: Error | undefined;
  #disconnecting = false;

  constructor(negotiated: Negotiated, options: { target: string; timeoutMs: number; maxInFlight: number }) {
    this.info = negotiated.info;
    this.#stream = negotiated.stream;
    this.#target = options.target;
    this.#timeoutMs = options.timeoutMs;
    this.#maxInFlight = options.maxInFlight;
    this.#receiver = new ReplyReceiver({
      structured: this.info.structured,
      allocationContext: this.info.allocationContext,
      lookup: (high, low) => this.#lookup(high, low),
      complete: (cookie, reply) => this.#finish(cookie, reply as Pending),
      protocolError: (message) => this.#protocol(message),
      remoteError: (errno, message, command) => remoteError(errno, message, command, this.#target),
      fail: (error) => this.#fail(error),
      ...(negotiated.input
        ? {
            yieldReads: () =>
              setImmediate(() => {
                if (!this.#stream.destroyed) this.#stream.resume();
              }),
          }
        : {}),
    });
    this.#receive(negotiated);
  }

  /** Hands the stream to the reply receiver: read straight into destinations where the socket allows it. */
  #receive(negotiated: Negotiated): void {
    const stream = this.#stream;
    const early = negotiated.reader.detach(); // normally empty: replies only follow requests
    const ended = (error?: Error) =>
      this.#fail(
        this.#receiver.midFrame
          ? this.#protocol("the server closed the connection in the middle of a reply (truncated frame)")
          : (error ?? new R3mapError("ERR_REMOTE_UNREACHABLE", `${this.#target} closed the connection`)),
      );
    stream.on("error", ended);
    stream.on("end", () => ended());
    stream.on("close", () => ended());
    if (negotiated.input) negotiated.input.sink = this.#receiver;
    else stream.on("data", (chunk: Buffer) => this.#receiver.received(chunk, chunk.length));
    if (early.length > 0) this.#receiver.received(early, early.length);
    stream.resume();
  }

  /** Requests awaiting a reply (for least-loaded scheduling). */
  get load(): number {
    return this.#pending.size + this.#waiting.length;
  }

  /** Set once the connection is unusable. */
  get failure(): Error | undefined {
    return this.#failure;
  }

  /** Sends a request; no reply within `timeoutMs` (default: the connection's; 0: none) fails it with ERR_TIMEOUT. */
  async request(
    command: number,
    flags: number,
    offset: number,
    length: number,
    payload?: Uint8Array,
    target?: Uint8Array,
    timeoutMs = this.#timeoutMs,
  ): Promise<StatusDescriptor[] | undefined> {
    if (this.#failure) throw this.#failure;
    const expired = () => timeoutError(this.#target, command, offset, length, timeoutMs);
    if (this.#pending.size >= this.#maxInFlight) {
      // The wait for a slot counts against the deadline too.
      const started = performance.now();
      await this.#slot(timeoutMs, expired);
      if (timeoutMs > 0) timeoutMs = Math.max(1, timeoutMs - Math.round(performance.now() - started));
    }
    if (this.#failure) throw this.#failure;
    const cookie = this.#nextCookie;
    this.#nextCookie = this.#nextCookie >= 0xffffffff ? 1 : this.#nextCookie + 1;
    return new Promise((resolve, reject) => {
      const pending: Pending = {
        command,
        offset,
        length,
        target,
        covered: 0,
        error: undefined,
        descriptors: undefined,
        abandoned: false,
        timer: undefined,
        resolve,
        reject,
      };
      if (timeoutMs > 0) {
        pending.timer = setTimeout(() => {
          const error = expired();
          // Its data is arriving and the socket may already be told to put the
          // next bytes into the caller's buffer: only ending the connection
          // guarantees nothing lands there after we gave up.
          if (this.#receiver.receiving === pending) return this.#fail(error);
          // Otherwise the reply may still come; its data is then dropped.
          pending.abandoned = true;
          pending.target = undefined;
          reject(error);
        }, timeoutMs);
      }
      this.#pending.set(cookie, pending);
      const header = Buffer.allocUnsafe(28);
      writeRequestHeader(header, 0, command, flags, 0, cookie, offset, length);
      if (payload && payload.length > 0) {
        this.#stream.cork();
        this.#stream.write(header);
        this.#stream.write(payload);
        this.#stream.uncork();
      } else this.#stream.write(header);
    });
  }

  /** Resolves when fewer than `maxInFlight` requests are pending; rejects with `expired()` after `timeoutMs` (0: never). */
  #slot(timeoutMs: number, expired: () => Error): Promise<void> {
    return new Promise<void>((go, fail) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter = {
        go: () => {
          clearTimeout(timer);
          go();
        },
        fail: (error: Error) => {
          clearTimeout(timer);
          fail(error);
        },
      };
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          const at = this.#waiting.indexOf(waiter);
          if (at >= 0) this.#waiting.splice(at, 1);
          fail(expired());
        }, timeoutMs);
      }
      this.#waiting.push(waiter);
    });
  }

  /** Soft disconnect: waits for outstanding replies (bounded), sends DISC and closes. */
  async disconnect(graceMs = 5_000): Promise<void> {
    if (this.#disconnecting) return;
    this.#disconnecting = true;
    const deadline = Date.now() + graceMs;
    while (this.#pending.size > 0 && !this.#failure && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    if (!this.#failure && !this.#stream.destroyed) {
      const header = Buffer.allocUnsafe(28);
      writeRequestHeader(header, 0, CMD.DISC, 0, 0, 0, 0, 0);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => resolve(), graceMs);
        this.#stream.once("close", () => {
          clearTimeout(timer);
          resolve();
        });
        this.#stream.end(header);
      });
    }
    this.#fail(new R3mapError("ERR_CLOSED", `${this.#target}: the connection was closed`));
  }

  /** Drops the connection at once. */
  destroy(error: Error): void {
    this.#fail(error);
  }

  #fail(error: Error): void {
    if (!this.#failure) {
      this.#failure =
        error instanceof R3mapError
          ? error
          : new R3mapError("ERR_REMOTE_UNREACHABLE", `${this.#target}: connection lost: ${error.message}`, {
              cause: error,
            });
    }
    this.#stream.destroy();
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      if (!pending.abandoned) pending.reject(this.#failure);
    }
    this.#pending.clear();
    for (const waiter of this.#waiting.splice(0)) waiter.fail(this.#failure);
  }

  #protocol(message: string): R3mapError {
    return new R3mapError("ERR_PROTOCOL", `${this.#target} broke the NBD protocol: ${message}`);
  }

  #lookup(high: number, low: number): Pending {
    const pending = high === 0 ? this.#pending.get(low) : undefined;
    if (!pending) throw this.#protocol(`reply for unknown cookie ${high}:${low}`);
    return pending;
  }

  #finish(cookie: number, pending: Pending): void {
    this.#pending.delete(cookie);
    clearTimeout(pending.timer);
    const waiter = this.#waiting.shift();
    waiter?.go();
    if (pending.abandoned) return;
    if (pending.error) pending.reject(pending.error);
    else if (pending.command === CMD.READ && pending.covered !== pending.length) {
      pending.reject(this.#protocol(`read reply covered ${pending.covered} of ${pending.length} bytes`));
    } else if (pending.command === CMD.BLOCK_STATUS && !pending.descriptors) {
      pending.reject(this.#protocol("block status reply without base:allocation descriptors"));
    } else pending.resolve(pending.descriptors);
  }
}
