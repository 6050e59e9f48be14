import type { Duplex } from "node:stream";
import { type Extent, errnoOf, memoryView, R3mapError } from "@r3map/core";
import type { BufferPool } from "./buffer-pool.js";
import type { ByteReader } from "./byte-reader.js";
import {
  CMD,
  CMD_FLAG,
  NBD_ERRNO,
  nbdErrno,
  REQUEST_MAGIC,
  REQUEST_SIZE,
  STATE_HOLE,
  STATE_ZERO,
  TF,
} from "./protocol.js";
import {
  blockStatusReply,
  errorReply,
  okReply,
  readReplyHeaderSize,
  writeReadReplyHeader,
} from "./replies.js";
import { ConnectionBudget, type ServerBudget } from "./reply-budget.js";
import type { ServedExport } from "./served-export.js";
import { BASE_ALLOCATION_ID, type Negotiated } from "./server-handshake.js";
import { Watchdog } from "./watchdog.js";
import { readUInt64 } from "./wire.js";

export interface SessionLimits {
  /** Requests taken in and not yet answered (executing, or their reply not yet handed to the kernel). */
  maxInFlight: number;
  /** Their bytes — payloads, replies, REPLY_OVERHEAD_BYTES each — before we stop reading. */
  maxBufferedBytes: number;
  /** A client that owes us part of a request, or does not read our replies, for this long is dropped. */
  stallTimeoutMs: number;
  /** A client that does nothing for this long is disconnected; 0 = never. */
  idleTimeoutMs: number;
}

interface Request {
  command: number;
  flags: number;
  cookieHigh: number;
  cookieLow: number;
  offset: number;
  length: number;
  /** Data it holds in the budgets until its reply is handed to the kernel (its overhead is counted too). */
  data: number;
}

/** A request we refuse, with the NBD errno name and a message for the client. */
class Refusal extends Error {
  constructor(
    readonly errno: string,
    message: string,
  ) {
    super(message);
  }
}

const ZEROES = new Uint8Array(1024 * 1024);
const CACHE_PIECE = 1024 * 1024;
/** Where read data starts in a reply buffer: room for the largest header, 8-byte aligned. */
const DATA_ALIGN = 32;

/**
 * The transmission phase of one connection: reads requests, runs many of them
 * at once against the backend, and answers each as soon as it is done (out of
 * order). Every request is counted in the connection's budget from its header
 * until its reply is handed to the kernel; reading stops while the budget (or
 * the server's) is spent, so a client that does not read its replies is held
 * back by TCP. A watchdog drops clients that stall.
 */
export class ServerSession {
  readonly #stream: Duplex;
  readonly #reader: ByteReader;
  readonly #served: ServedExport;
  readonly #structured: boolean;
  readonly #blockStatus: boolean;
  readonly #flags: number;
  readonly #budget: ConnectionBudget;
  readonly #watchdog: Watchdog;
  readonly #pool: BufferPool;
  #executing = 0;
  /** What the loop waits for from the client: the next header, or the payload of the current one. */
  #receiving: "header" | "payload" | undefined;
  #closing = false;
  #ended: Error | undefined;
  #idle: Array<() => void> = [];

  constructor(negotiated: Negotiated, limits: SessionLimits, pool: BufferPool, server: ServerBudget) {
    this.#pool = pool;
    this.#stream = negotiated.stream;
    this.#reader = negotiated.reader;
    this.#served = negotiated.served;
    this.#structured = negotiated.structured;
    this.#blockStatus = negotiated.blockStatus;
    this.#flags = this.#served.transmissionFlags(this.#structured);
    this.#budget = new ConnectionBudget(
      { maxRequests: limits.maxInFlight, maxBytes: limits.maxBufferedBytes },
      server,
    );
    this.#stream.once("close", () => this.#budget.close());
    this.#watchdog = new Watchdog(
      {
        progress: () => [this.#reader.received, this.#budget.answered, kernelQueue(this.#stream)],
        waitingOnClient: () =>
          this.#receiving === "payload" ||
          (this.#receiving === "header" && this.#reader.holding > 0) ||
          this.#budget.requests > this.#executing,
        idle: () => this.#receiving === "header" && this.#reader.holding === 0 && this.#budget.requests === 0,
      },
      limits,
      (reason) => this.#expire(reason, limits),
    );
  }

  /** Requests executing now. */
  get inFlight(): number {
    return this.#executing;
  }

  /**
   * Serves until the client disconnects (DISC or close), `shutdown()`, or the
   * watchdog ends the connection. Never rejects; resolves with the reason when
   * the server ended the connection.
   */
  async run(): Promise<Error | undefined> {
    this.#watchdog.start();
    try {
      for (;;) {
        await this.#budget.room(0);
        this.#receiving = "header";
        const header = this.#reader.tryTake(REQUEST_SIZE) ?? (await this.#reader.take(REQUEST_SIZE));
        this.#receiving = undefined;
        if (header.readUInt32BE(0) !== REQUEST_MAGIC) break; // hard disconnect: the stream is no longer framed
        const request: Request = {
          flags: header.readUInt16BE(4),
          command: header.readUInt16BE(6),
          cookieHigh: header.readUInt32BE(8),
          cookieLow: header.readUInt32BE(12),
          offset: readUInt64(header, 16),
          length: header.readUInt32BE(24),
          data: 0,
        };
        if (request.command === CMD.DISC) break;
        const refusal = this.#closing
          ? new Refusal("ESHUTDOWN", "the server is shutting down")
          : this.#validate(request);
        // A READ's data or a WRITE's payload is held until the reply is sent;
        // a refused WRITE's payload is skipped, never held.
        if (!refusal && (request.command === CMD.READ || request.command === CMD.WRITE)) {
          request.data = request.length;
        }
        await this.#budget.room(request.data);
        this.#budget.take(request.data);
        let payload: Buffer | undefined;
        if (request.command === CMD.WRITE) {
          // The payload follows the header whatever we think of the request.
          this.#receiving = "payload";
          try {
            if (refusal) await this.#reader.skip(request.length);
            else
              payload = this.#aligned(
                this.#reader.tryTake(request.length) ?? (await this.#reader.take(request.length)),
                request.offset,
              );
          } catch (error) {
            this.#budget.give(request.data); // never answered: the connection is gone
            throw error;
          }
          this.#receiving = undefined;
        }
        if (refusal) {
          this.#replyError(request, refusal.errno, refusal.message);
          continue;
        }
        this.#start(request, payload);
      }
    } catch {
      // The connection failed or was truncated; a partial request is dropped, never executed.
    }
    this.#watchdog.stop();
    await this.#drained();
    if (!this.#stream.destroyed) this.#stream.end();
    return this.#ended;
  }

  /** Stops reading new work (later requests get ESHUTDOWN) and resolves once in-flight requests have been answered. */
  async shutdown(): Promise<void> {
    this.#closing = true;
    await this.#drained();
  }

  #expire(reason: "stall" | "idle", limits: SessionLimits): void {
    this.#ended =
      reason === "idle"
        ? new R3mapError("ERR_TIMEOUT", `the client was idle for ${limits.idleTimeoutMs} ms`)
        : new R3mapError(
            "ERR_TIMEOUT",
            this.#budget.requests > this.#executing && this.#receiving !== "payload"
              ? `the client did not read its replies for ${limits.stallTimeoutMs} ms`
              : `the client stopped sending a request for ${limits.stallTimeoutMs} ms`,
          );
    this.#stream.destroy();
  }

  /**
   * A payload sliced straight out of a socket chunk usually starts 4 bytes off
   * the 8-byte grid (after the 28-byte header); copying that into a
   * SharedArrayBuffer-backed store goes byte by byte. A fast plain copy into an
   * aligned pool buffer first is cheaper overall.
   */
  #aligned(payload: Buffer, offset: number): Buffer {
    if (payload.length < 4096 || (payload.byteOffset - offset) % 8 === 0) return payload;
    const copy = this.#pool.get(payload.length);
    payload.copy(copy);
    return copy;
  }

  #drained(): Promise<void> {
    if (this.#executing === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #validate(request: Request): Refusal | undefined {
    const { command, flags, offset, length } = request;
    const served = this.#served;
    const allowed = this.#allowedFlags(command);
    if (allowed === undefined) return new Refusal("EINVAL", `unknown or unadvertised command ${command}`);
    if ((flags & ~allowed) !== 0)
      return new Refusal("EINVAL", `flags 0x${flags.toString(16)} are not valid for command ${command}`);
    if (command === CMD.FLUSH) return undefined;
    const writes = command === CMD.WRITE || command === CMD.WRITE_ZEROES || command === CMD.TRIM;
    if (writes && served.readOnly) return new Refusal("EPERM", "the export is read-only");
    const min = served.minimumBlockSize;
    if (min > 1 && (offset % min !== 0 || length % min !== 0)) {
      return new Refusal("EINVAL", `request is not aligned to the minimum block size ${min}`);
    }
    const bounded = command === CMD.READ || command === CMD.WRITE || command === CMD.CACHE;
    if (bounded && length > served.maximumBlockSize) {
      return new Refusal(
        "EINVAL",
        `request of ${length} bytes exceeds the maximum block size ${served.maximumBlockSize}`,
      );
    }
    if (offset + length > served.size) {
      const errno = command === CMD.WRITE || command === CMD.WRITE_ZEROES ? "ENOSPC" : "EINVAL";
      return new Refusal(
        errno,
        `request [${offset}, +${length}) reaches past the end of the export (${served.size} bytes)`,
      );
    }
    if (command === CMD.BLOCK_STATUS && !this.#blockStatus) {
      return new Refusal(
        "EINVAL",
        "BLOCK_STATUS needs the base:allocation meta context to be selected first",
      );
    }
    // Descriptors may not add up to more than the request, and there must be
    // at least one: a length of 0 has no answer (at the export's end, a
    // one-byte descriptor would describe bytes that do not exist).
    if (command === CMD.BLOCK_STATUS && length === 0) {
      return new Refusal("EINVAL", "BLOCK_STATUS needs a length of at least one byte");
    }
    return undefined;
  }

  /** Flags each command accepts here, or undefined when the command is not offered. */
  #allowedFlags(command: number): number | undefined {
    const fua = CMD_FLAG.FUA;
    const advertised = (flag: number) => (this.#flags & flag) !== 0;
    switch (command) {
      case CMD.READ:
        return fua | (this.#structured ? CMD_FLAG.DF : 0);
      case CMD.WRITE:
      case CMD.FLUSH:
      case CMD.CACHE:
        return fua;
      case CMD.TRIM:
        return advertised(TF.SEND_TRIM) || this.#served.readOnly ? fua : undefined;
      case CMD.WRITE_ZEROES:
        return advertised(TF.SEND_WRITE_ZEROES) || this.#served.readOnly
          ? fua | CMD_FLAG.NO_HOLE | (advertised(TF.SEND_FAST_ZERO) ? CMD_FLAG.FAST_ZERO : 0)
          : undefined;
      case CMD.BLOCK_STATUS:
        return this.#structured ? fua | CMD_FLAG.REQ_ONE : undefined;
      default:
        return undefined;
    }
  }

  #start(request: Request, payload: Buffer | undefined): void {
    this.#executing++;
    this.#execute(request, payload)
      .catch((error: unknown) => {
        const message = error instanceof Error ? error.message : String(error);
        this.#replyError(request, error instanceof Refusal ? error.errno : errnoOf(error), message);
      })
      .finally(() => {
        this.#executing--;
        if (this.#executing === 0) for (const resolve of this.#idle.splice(0)) resolve();
      });
  }

  async #execute(request: Request, payload: Buffer | undefined): Promise<void> {
    const backend = this.#served.backend;
    const { offset, length } = request;
    const fua = (request.flags & CMD_FLAG.FUA) !== 0;
    switch (request.command) {
      case CMD.READ:
        return this.#read(request);
      case CMD.WRITE:
        try {
          await backend.writeAt(payload!, offset);
        } finally {
          this.#pool.release(payload!);
        }
        if (fua) await backend.sync();
        return this.#replyOk(request);
      case CMD.FLUSH:
        await backend.sync();
        return this.#replyOk(request);
      case CMD.TRIM:
        if (length > 0) await backend.trim!(offset, length);
        if (fua) await backend.sync();
        return this.#replyOk(request);
      case CMD.WRITE_ZEROES:
        await this.#writeZeroes(request);
        if (fua) await backend.sync();
        return this.#replyOk(request);
      case CMD.CACHE:
        await this.#cache(offset, length);
        return this.#replyOk(request);
      case CMD.BLOCK_STATUS:
        return this.#send(request, [
          blockStatusReply(request, BASE_ALLOCATION_ID, await this.#extents(request)),
        ]);
    }
  }

  async #read(request: Request): Promise<void> {
    const { length, offset } = request;
    if (this.#structured && length === 0) return this.#replyOk(request);
    const lent = memoryView(this.#served.backend, offset, length);
    if (lent) return this.#replyFrom(request, lent);
    const head = readReplyHeaderSize(this.#structured);
    // The data starts 8-byte aligned: copies out of a SharedArrayBuffer into a
    // misaligned destination go byte by byte (about 4x slower).
    const whole = this.#pool.get(DATA_ALIGN + length);
    const out = whole.subarray(DATA_ALIGN - head);
    try {
      await this.#served.backend.readAt(whole.subarray(DATA_ALIGN), offset);
    } catch (error) {
      this.#pool.release(whole);
      throw error;
    }
    writeReadReplyHeader(out, this.#structured, request, offset, length);
    this.#send(request, [out], () => this.#pool.release(whole));
  }

  /**
   * Answers a READ straight from the backend's memory: the kernel copies the
   * bytes from there when it sends them, with no copy of ours. They may be
   * sent a little later than now; a write racing this read may then show —
   * which NBD allows for requests in flight together, and a client cannot
   * issue a later one before it has this reply.
   */
  #replyFrom(request: Request, memory: Uint8Array): void {
    const head = Buffer.allocUnsafe(readReplyHeaderSize(this.#structured));
    writeReadReplyHeader(head, this.#structured, request, request.offset, request.length);
    this.#send(request, [head, Buffer.from(memory.buffer, memory.byteOffset, memory.byteLength)]);
  }

  async #writeZeroes(request: Request): Promise<void> {
    const backend = this.#served.backend;
    const { offset, length } = request;
    const fast = (request.flags & CMD_FLAG.FAST_ZERO) !== 0;
    if (backend.writeZeroes) {
      if (length > 0) await backend.writeZeroes(offset, length);
      return;
    }
    // Emulated with plain writes, which is not faster than WRITE: refuse a fast-zero request.
    if (fast)
      throw new Refusal("ENOTSUP", "this export writes zeroes as data; fast zeroing is not available");
    for (let at = 0; at < length; at += ZEROES.length) {
      await backend.writeAt(ZEROES.subarray(0, Math.min(ZEROES.length, length - at)), offset + at);
    }
  }

  /** Reads the range through the backend so that caching stages below pull it in. */
  async #cache(offset: number, length: number): Promise<void> {
    const scratch = new Uint8Array(Math.min(CACHE_PIECE, length));
    for (let at = 0; at < length; at += scratch.length) {
      await this.#served.backend.readAt(
        scratch.subarray(0, Math.min(scratch.length, length - at)),
        offset + at,
      );
    }
  }

  async #extents(request: Request): Promise<Array<[length: number, flags: number]>> {
    const { offset, length } = request;
    const backend = this.#served.backend;
    // Without blockStatus we do not know of holes: "allocated data" is always truthful.
    const raw: Extent[] =
      backend.blockStatus && length > 0
        ? await backend.blockStatus(offset, length)
        : [{ offset, length, zero: false, hole: false }];
    const out: Array<[number, number]> = [];
    let position = offset;
    const end = offset + length;
    for (const extent of raw) {
      const start = Math.max(extent.offset, position);
      const stop = Math.min(extent.offset + extent.length, end);
      if (stop <= start || start !== position) continue;
      const flags = (extent.hole ? STATE_HOLE : 0) | (extent.zero ? STATE_ZERO : 0);
      const last = out[out.length - 1];
      if (last && last[1] === flags) last[0] += stop - start;
      else out.push([stop - start, flags]);
      position = stop;
      if (position === end) break;
    }
    // Validation refused a length of 0, so this never reaches past the request (or the export).
    if (out.length === 0) out.push([length, 0]);
    if ((request.flags & CMD_FLAG.REQ_ONE) !== 0) out.length = 1;
    return out;
  }

  #replyOk(request: Request): void {
    this.#send(request, [okReply(this.#structured, request)]);
  }

  #replyError(request: Request, errno: string, message: string): void {
    const value = errno in NBD_ERRNO ? NBD_ERRNO[errno]! : nbdErrno(errno);
    this.#send(request, [errorReply(this.#structured, request, value, message)]);
  }

  /**
   * Queues a request's reply (its frames go out together); once the socket no
   * longer needs the bytes, `done` runs and the request leaves the budget.
   */
  #send(request: Request, frames: Buffer[], done?: () => void): void {
    const sent = () => {
      done?.();
      this.#budget.give(request.data);
    };
    if (this.#stream.destroyed || !this.#stream.writable) {
      sent();
      return;
    }
    const last = frames.length - 1;
    if (last > 0) this.#stream.cork();
    for (let i = 0; i < last; i++) this.#stream.write(frames[i]);
    this.#stream.write(frames[last], sent);
    if (last > 0) this.#stream.uncork();
  }
}

/**
 * Bytes of ours still waiting for room in the kernel's socket buffer (a
 * libuv stream's write queue), which shrinks as the client reads; 0 for
 * streams that do not say.
 */
function kernelQueue(stream: Duplex): number {
  return (stream as { _handle?: { writeQueueSize?: number } })._handle?.writeQueueSize ?? 0;
}

export { Refusal };
