import type * as net from "node:net";
import { type Backend, checkRange, type Extent, type NbdHandOff, R3mapError } from "@r3map/core";
import { NbdConnection, type StatusDescriptor } from "./client-connection.js";
import { clientHandshake, type ExportInfo, listExports } from "./client-handshake.js";
import {
  describeTarget,
  type NbdClientOptions,
  type ResolvedClientOptions,
  resolveClientOptions,
} from "./client-options.js";
import { CMD, DEFAULT_MAX_BLOCK, STATE_HOLE, STATE_ZERO, TF } from "./protocol.js";
import { parseNbdUri } from "./uri.js";

/** Pieces for commands without payload whose length is not bounded by the maximum block size. */
const LARGE_PIECE = 1024 * 1024 * 1024;

/**
 * An NBD export as an r3map Backend. Requests are pipelined (many in flight,
 * matched by cookie), split at the server's maximum block size, optionally
 * spread over several connections, and retried on a fresh connection when one
 * is lost. `trim`, `writeZeroes` and `blockStatus` exist only when the server
 * offers them.
 */
export class NbdClient implements Backend {
  readonly size: number;
  readonly readOnly: boolean;
  /** Any byte range, when the server's minimum block size is one byte. */
  readonly byteRanges: boolean;
  /** What the server told us during negotiation. */
  readonly info: ExportInfo;
  readonly trim: ((offset: number, length: number) => Promise<void>) | undefined;
  readonly writeZeroes: ((offset: number, length: number) => Promise<void>) | undefined;
  readonly blockStatus: ((offset: number, length: number) => Promise<Extent[]>) | undefined;

  readonly #options: ResolvedClientOptions;
  readonly #target: string;
  readonly #slots: Array<NbdConnection | undefined>;
  readonly #reconnecting = new Map<number, Promise<NbdConnection>>();
  readonly #piece: number;
  #closing: Promise<void> | undefined;

  private constructor(first: NbdConnection, options: ResolvedClientOptions) {
    this.#options = options;
    this.#target = describeTarget(options);
    this.info = first.info;
    this.size = first.info.size;
    this.readOnly = (first.info.flags & TF.READ_ONLY) !== 0;
    this.byteRanges = first.info.minimumBlockSize === 1;
    const multi = (first.info.flags & TF.CAN_MULTI_CONN) !== 0;
    this.#slots = Array.from({ length: multi ? options.connections : 1 }, (_, i) =>
      i === 0 ? first : undefined,
    );
    const max = Math.min(
      options.maxRequestSize ?? DEFAULT_MAX_BLOCK,
      first.info.maximumBlockSize === 0xffffffff ? DEFAULT_MAX_BLOCK : first.info.maximumBlockSize,
    );
    const min = first.info.minimumBlockSize;
    this.#piece = Math.max(min, Math.floor(max / min) * min);
    const flags = first.info.flags;
    this.trim = flags & TF.SEND_TRIM ? (offset, length) => this.#ranged(CMD.TRIM, offset, length) : undefined;
    this.writeZeroes =
      flags & TF.SEND_WRITE_ZEROES
        ? (offset, length) => this.#ranged(CMD.WRITE_ZEROES, offset, length)
        : undefined;
    this.blockStatus =
      first.info.structured && first.info.allocationContext !== undefined
        ? (offset, length) => this.#blockStatus(offset, length)
        : undefined;
  }

  /** Connects (and negotiates) to an NBD server. */
  static async connect(target: string | URL | NbdClientOptions): Promise<NbdClient> {
    const options = resolveClientOptions(
      typeof target === "string" || target instanceof URL ? parseNbdUri(target) : target,
    );
    const first = await NbdClient.#open(options);
    const client = new NbdClient(first, options);
    // Extra connections are opened up front so the first burst already spreads.
    await Promise.all(
      client.#slots.map((slot, i) => (slot ? undefined : client.#reconnect(i).catch(() => undefined))),
    );
    return client;
  }

  static async #open(options: ResolvedClientOptions): Promise<NbdConnection> {
    const negotiated = await clientHandshake(options);
    return new NbdConnection(negotiated, {
      target: describeTarget(options),
      timeoutMs: options.timeoutMs,
      maxInFlight: options.maxInFlight,
    });
  }

  /** Number of connections currently usable. */
  get connectionCount(): number {
    return this.#slots.filter((slot) => slot && !slot.failure).length;
  }

  async readAt(buffer: Uint8Array, offset: number): Promise<void> {
    this.#check(offset, buffer.length);
    await this.#pieces(buffer.length, (at, n) =>
      this.#issue(CMD.READ, 0, offset + at, n, undefined, buffer.subarray(at, at + n)),
    );
  }

  async writeAt(buffer: Uint8Array, offset: number): Promise<void> {
    this.#check(offset, buffer.length);
    if (this.readOnly) throw new R3mapError("ERR_READ_ONLY", `${this.#target} is read-only`);
    await this.#pieces(buffer.length, (at, n) =>
      this.#issue(CMD.WRITE, 0, offset + at, n, buffer.subarray(at, at + n)),
    );
  }

  async sync(): Promise<void> {
    this.#assertOpen();
    if (this.info.flags & TF.SEND_FLUSH) await this.#issue(CMD.FLUSH, 0, 0, 0);
  }

  /**
   * A further connection to the same export, negotiated for simple replies
   * and handed over: for native code that speaks the transmission phase
   * itself (a FUSE file whose threads read a direct mount's data straight
   * from the server). The caller owns the socket and must end it; this client
   * never uses it. Undefined over TLS, which native code does not speak.
   */
  readonly handOffConnection = async (): Promise<NbdHandOff | undefined> => {
    this.#assertOpen();
    if (this.#options.tls) return undefined;
    const { stream, info } = await clientHandshake({ ...this.#options, structuredReplies: false });
    return {
      socket: stream as net.Socket,
      timeoutMs: this.#options.timeoutMs,
      minimumBlockSize: info.minimumBlockSize,
      maximumBlockSize: Math.min(info.maximumBlockSize, DEFAULT_MAX_BLOCK),
    };
  };

  /** Flushes (when writable), sends DISC on every connection and closes. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const live = this.#slots.filter((slot): slot is NbdConnection => slot !== undefined && !slot.failure);
      if (!this.readOnly && this.info.flags & TF.SEND_FLUSH && live[0]) {
        await live[0].request(CMD.FLUSH, 0, 0, 0).catch(() => undefined);
      }
      await Promise.all(live.map((connection) => connection.disconnect()));
      await Promise.allSettled([...this.#reconnecting.values()].map(async (p) => (await p).disconnect()));
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #assertOpen(): void {
    if (this.#closing) throw new R3mapError("ERR_CLOSED", `NbdClient for ${this.#target} is closed`);
  }

  #check(offset: number, length: number): void {
    this.#assertOpen();
    checkRange(this.size, offset, length);
    const min = this.info.minimumBlockSize;
    if (min > 1 && (offset % min !== 0 || length % min !== 0)) {
      throw new R3mapError(
        "ERR_MISALIGNED",
        `${this.#target} needs requests aligned to ${min} bytes (got ${offset}+${length}); put an ArbitraryStage in front`,
      );
    }
  }

  async #pieces(length: number, each: (at: number, n: number) => Promise<unknown>): Promise<void> {
    if (length <= this.#piece) {
      if (length > 0) await each(0, length);
      return;
    }
    const all: Promise<unknown>[] = [];
    for (let at = 0; at < length; at += this.#piece) all.push(each(at, Math.min(this.#piece, length - at)));
    const results = await Promise.allSettled(all);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  async #ranged(command: number, offset: number, length: number): Promise<void> {
    this.#check(offset, length);
    if (this.readOnly) throw new R3mapError("ERR_READ_ONLY", `${this.#target} is read-only`);
    const piece = command === CMD.WRITE_ZEROES ? this.#piece : LARGE_PIECE;
    for (let at = 0; at < length; at += piece) {
      await this.#issue(command, 0, offset + at, Math.min(piece, length - at));
    }
  }

  async #blockStatus(offset: number, length: number): Promise<Extent[]> {
    this.#check(offset, length);
    const extents: Extent[] = [];
    let position = offset;
    const end = offset + length;
    while (position < end) {
      const n = Math.min(LARGE_PIECE, end - position);
      const descriptors = (await this.#issue(CMD.BLOCK_STATUS, 0, position, n)) as StatusDescriptor[];
      for (const [size, flags] of descriptors) {
        const stop = Math.min(end, position + size);
        extents.push({
          offset: position,
          length: stop - position,
          hole: (flags & STATE_HOLE) !== 0,
          zero: (flags & STATE_ZERO) !== 0,
        });
        position = stop;
        if (position >= end) break;
      }
    }
    return extents;
  }

  /** Sends one request, on the least-loaded live connection, retrying on a new connection when one is lost. */
  async #issue(
    command: number,
    flags: number,
    offset: number,
    length: number,
    payload?: Uint8Array,
    target?: Uint8Array,
  ): Promise<StatusDescriptor[] | undefined> {
    const { attempts, delayMs, maxDelayMs } = this.#options.retry;
    for (let attempt = 0; ; attempt++) {
      this.#assertOpen();
      try {
        const connection = await this.#pick();
        return await connection.request(command, flags, offset, length, payload, target);
      } catch (error) {
        const retryable = error instanceof R3mapError && error.code === "ERR_REMOTE_UNREACHABLE";
        if (!retryable || attempt >= attempts || this.#closing) throw error;
        await new Promise((resolve) => setTimeout(resolve, Math.min(maxDelayMs, delayMs * 2 ** attempt)));
      }
    }
  }

  async #pick(): Promise<NbdConnection> {
    let best: NbdConnection | undefined;
    this.#slots.forEach((slot, i) => {
      if (!slot || slot.failure) {
        if (!this.#reconnecting.has(i) && slot) void this.#reconnect(i).catch(() => undefined);
        return;
      }
      if (!best || slot.load < best.load) best = slot;
    });
    if (best) return best;
    const pending = [...this.#reconnecting.values()];
    return pending.length > 0
      ? Promise.any(pending).catch((e: AggregateError) => Promise.reject(e.errors[0]))
      : this.#reconnect(0);
  }

  #reconnect(slot: number): Promise<NbdConnection> {
    const existing = this.#reconnecting.get(slot);
    if (existing) return existing;
    const attempt = (async () => {
      try {
        const connection = await NbdClient.#open(this.#options);
        if (connection.info.size !== this.size) {
          connection.destroy(new R3mapError("ERR_REMOTE_FAILED", "export size changed"));
          throw new R3mapError(
            "ERR_REMOTE_FAILED",
            `${this.#target} changed size from ${this.size} to ${connection.info.size} bytes across a reconnect`,
          );
        }
        if (this.#closing) {
          await connection.disconnect();
          throw new R3mapError("ERR_CLOSED", `NbdClient for ${this.#target} is closed`);
        }
        this.#slots[slot] = connection;
        return connection;
      } finally {
        this.#reconnecting.delete(slot);
      }
    })();
    this.#reconnecting.set(slot, attempt);
    return attempt;
  }
}

/** Connects to an NBD export: `nbd://host:port/export`, `nbds://…`, `nbd+unix:///export?socket=…`, or options. */
export function connectNbd(target: string | URL | NbdClientOptions): Promise<NbdClient> {
  return NbdClient.connect(target);
}

/** The exports a server offers (NBD_OPT_LIST). */
export function listNbdExports(
  target: string | URL | NbdClientOptions,
): Promise<Array<{ name: string; description: string }>> {
  const options = resolveClientOptions(
    typeof target === "string" || target instanceof URL ? parseNbdUri(target) : target,
  );
  return listExports(options);
}
