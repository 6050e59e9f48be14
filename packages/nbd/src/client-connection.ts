import type { Duplex } from "node:stream";
import { type ErrorCode, R3mapError } from "@r3map/core";
import type { ByteReader } from "./byte-reader.js";
import type { ExportInfo, Negotiated } from "./client-handshake.js";
import {
  CMD,
  errnoName,
  REPLY_FLAG_DONE,
  REPLY_TYPE,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
} from "./protocol.js";
import { readUInt64, writeRequestHeader } from "./wire.js";

/** One `base:allocation` descriptor: length and NBD_STATE_* flags. */
export type StatusDescriptor = [length: number, flags: number];

interface Pending {
  command: number;
  offset: number;
  length: number;
  /** Where READ data goes; replaced by scratch space once the caller gave up (timeout). */
  target: Uint8Array | undefined;
  covered: number;
  error: R3mapError | undefined;
  descriptors: StatusDescriptor[] | undefined;
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

/**
 * One negotiated NBD connection in transmission phase: sends requests with
 * unique cookies and matches replies (in any order) back to them.
 */
export class NbdConnection {
  readonly info: ExportInfo;
  readonly #stream: Duplex;
  readonly #reader: ByteReader;
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
    this.#reader = negotiated.reader;
    this.#target = options.target;
    this.#timeoutMs = options.timeoutMs;
    this.#maxInFlight = options.maxInFlight;
    this.#stream.on("error", () => {}); // surfaced through the reader
    void this.#readReplies();
  }

  /** Requests awaiting a reply (for least-loaded scheduling). */
  get load(): number {
    return this.#pending.size + this.#waiting.length;
  }

  /** Set once the connection is unusable. */
  get failure(): Error | undefined {
    return this.#failure;
  }

  async request(
    command: number,
    flags: number,
    offset: number,
    length: number,
    payload?: Uint8Array,
    target?: Uint8Array,
  ): Promise<StatusDescriptor[] | undefined> {
    if (this.#failure) throw this.#failure;
    if (this.#pending.size >= this.#maxInFlight) {
      await new Promise<void>((go, fail) => this.#waiting.push({ go, fail }));
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
      if (this.#timeoutMs > 0) {
        pending.timer = setTimeout(() => {
          // The reply may still come; it is then read into scratch space and dropped.
          pending.abandoned = true;
          pending.target = undefined;
          reject(
            new R3mapError(
              "ERR_TIMEOUT",
              `${this.#target}: no reply to command ${command} at ${offset}+${length} within ${this.#timeoutMs} ms`,
            ),
          );
        }, this.#timeoutMs);
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

  async #readReplies(): Promise<void> {
    const reader = this.#reader;
    try {
      for (;;) {
        const magic = (reader.tryTake(4) ?? (await reader.take(4))).readUInt32BE(0);
        if (magic === SIMPLE_REPLY_MAGIC) await this.#simpleReply();
        else if (magic === STRUCTURED_REPLY_MAGIC) {
          if (!this.info.structured) throw this.#protocol("structured reply without negotiation");
          await this.#structuredChunk();
        } else throw this.#protocol(`bad reply magic 0x${magic.toString(16)}`);
      }
    } catch (error) {
      this.#fail(error instanceof Error ? error : new Error(String(error)));
    }
  }

  async #simpleReply(): Promise<void> {
    const reader = this.#reader;
    const rest = reader.tryTake(12) ?? (await reader.take(12));
    const error = rest.readUInt32BE(0);
    const high = rest.readUInt32BE(4);
    const low = rest.readUInt32BE(8);
    const pending = this.#lookup(high, low);
    if (error !== 0) pending.error = remoteError(error, "", pending.command, this.#target);
    else if (pending.command === CMD.READ) {
      if (this.info.structured)
        throw this.#protocol("simple reply to READ after structured replies were negotiated");
      await reader.takeInto(pending.target ?? new Uint8Array(pending.length));
      pending.covered = pending.length;
    } else if (pending.command === CMD.BLOCK_STATUS) throw this.#protocol("simple reply to BLOCK_STATUS");
    this.#finish(low, pending);
  }

  async #structuredChunk(): Promise<void> {
    const reader = this.#reader;
    const header = reader.tryTake(16) ?? (await reader.take(16));
    const flags = header.readUInt16BE(0);
    const type = header.readUInt16BE(2);
    const high = header.readUInt32BE(4);
    const low = header.readUInt32BE(8);
    const length = header.readUInt32BE(12);
    const pending = this.#lookup(high, low);
    const within = (offset: number, n: number) =>
      offset >= pending.offset && offset + n <= pending.offset + pending.length && n > 0;

    switch (type) {
      case REPLY_TYPE.NONE:
        if (length !== 0) throw this.#protocol("NONE chunk with a payload");
        break;
      case REPLY_TYPE.OFFSET_DATA: {
        if (pending.command !== CMD.READ || length < 9) throw this.#protocol("unexpected OFFSET_DATA chunk");
        const offset = readUInt64(await reader.take(8), 0);
        const n = length - 8;
        if (!within(offset, n)) throw this.#protocol(`data chunk ${offset}+${n} outside the request`);
        const start = offset - pending.offset;
        if (pending.target) await reader.takeInto(pending.target.subarray(start, start + n));
        else await reader.skip(n);
        pending.covered += n;
        break;
      }
      case REPLY_TYPE.OFFSET_HOLE: {
        if (pending.command !== CMD.READ || length !== 12)
          throw this.#protocol("unexpected OFFSET_HOLE chunk");
        const body = await reader.take(12);
        const offset = readUInt64(body, 0);
        const n = body.readUInt32BE(8);
        if (!within(offset, n)) throw this.#protocol(`hole chunk ${offset}+${n} outside the request`);
        pending.target?.fill(0, offset - pending.offset, offset - pending.offset + n);
        pending.covered += n;
        break;
      }
      case REPLY_TYPE.BLOCK_STATUS: {
        if (pending.command !== CMD.BLOCK_STATUS || length < 12 || (length - 4) % 8 !== 0) {
          throw this.#protocol("malformed BLOCK_STATUS chunk");
        }
        const body = await reader.take(length);
        if (body.readUInt32BE(0) === this.info.allocationContext) {
          const descriptors: StatusDescriptor[] = [];
          for (let at = 4; at < length; at += 8)
            descriptors.push([body.readUInt32BE(at), body.readUInt32BE(at + 4)]);
          if (descriptors.some(([n]) => n === 0)) throw this.#protocol("zero-length block status descriptor");
          pending.descriptors = descriptors;
        }
        break;
      }
      default: {
        if ((type & 0x8000) === 0) throw this.#protocol(`unknown chunk type ${type}`);
        if (length < 6) throw this.#protocol("error chunk too short");
        const body = await reader.take(length);
        const errno = body.readUInt32BE(0);
        const messageLength = body.readUInt16BE(4);
        if (6 + messageLength > length) throw this.#protocol("error message longer than its chunk");
        pending.error ??= remoteError(
          errno,
          body.toString("utf8", 6, 6 + messageLength),
          pending.command,
          this.#target,
        );
      }
    }
    if (flags & REPLY_FLAG_DONE) this.#finish(low, pending);
  }
}
