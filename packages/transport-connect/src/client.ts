import type { Interceptor } from "@connectrpc/connect";
import {
  type Backend,
  checkRange,
  type DigestSource,
  type Extent,
  type Progress,
  R3mapError,
  type ScatteredPiece,
} from "@r3map/core";
import { Caller, type CallerOptions, type PerCallOptions } from "./caller.js";
import { algorithmToWire, collectDigests } from "./digests.js";
import type { Seeder as SeederServiceDesc } from "./gen/migration/v1/seeder_pb.js";
import { Backend as BackendServiceDesc } from "./gen/mount/v1/backend_pb.js";
import { BackendService, Capability } from "./gen/r3map/v1/r3map_pb.js";
import { DEFAULT_MAX_REQUEST_BYTES, MESSAGE_OVERHEAD_BYTES, positiveInteger } from "./limits.js";
import { SessionPool } from "./session-pool.js";
import type { ClientTlsOptions } from "./tls-options.js";

export interface ConnectClientOptions extends CallerOptions {
  /** `http://host:port` (h2c) or `https://host:port` (TLS). */
  baseUrl: string;
  /** `grpc` (default; what the original Go servers speak) or `connect`. */
  protocol?: "grpc" | "connect";
  /** HTTP/2 connections to spread calls across (default 1). */
  sessions?: number;
  tls?: ClientTlsOptions;
  /** Bearer token sent with every call. */
  token?: string;
  /**
   * Size of the resource. Without it the client asks the server (GetInfo);
   * pass it for an original r3map (Go) server, which has no such call.
   */
  size?: number;
  /**
   * Largest ReadAt/WriteAt payload per call. Default: the server's limit from
   * GetInfo; with `size` given (no GetInfo), 2 MiB, under grpc-go's 4 MiB
   * default receive limit.
   */
  maxRequestBytes?: number;
  interceptors?: Interceptor[];
}

/**
 * Payload per call when the server's limit is unknown (no GetInfo, as with an
 * original Go server): grpc-go refuses received messages over 4 MiB by default.
 */
const ORIGINAL_SERVER_REQUEST_BYTES = 2 * 1024 * 1024;

/** What GetInfo reports. */
export interface RemoteInfo {
  size: number;
  maxRequestBytes: number;
  chunkSize: number;
  readOnly: boolean;
  readStream: boolean;
  progress: boolean;
  migration: boolean;
  trim: boolean;
  writeZeroes: boolean;
  blockStatus: boolean;
  byteRanges: boolean;
  /** The server computes digests of its copy (`Digests`). */
  digests: boolean;
  /** The server takes several ranges in one write (`WriteScattered`). */
  writeScattered: boolean;
}

/** Options shared by ConnectBackend and SeederClient. */
export async function openCaller(
  options: ConnectClientOptions,
): Promise<{ caller: Caller; info: RemoteInfo }> {
  const requested =
    options.maxRequestBytes === undefined
      ? undefined
      : positiveInteger(options.maxRequestBytes, "maxRequestBytes");
  const pool = new SessionPool({
    baseUrl: options.baseUrl,
    sessions: options.sessions ?? 1,
    maxMessageBytes: (requested ?? DEFAULT_MAX_REQUEST_BYTES) + MESSAGE_OVERHEAD_BYTES,
    ...(options.protocol ? { protocol: options.protocol } : {}),
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.token === undefined ? {} : { token: options.token }),
    ...(options.interceptors ? { interceptors: options.interceptors } : {}),
  });
  const caller = new Caller(pool, options);
  try {
    await pool.connect();
    let info: RemoteInfo;
    if (options.size !== undefined) {
      if (!Number.isSafeInteger(options.size) || options.size < 0) {
        throw new R3mapError(
          "ERR_INVALID_ARGUMENT",
          `size must be a non-negative integer, got ${options.size}`,
        );
      }
      info = {
        size: options.size,
        maxRequestBytes: requested ?? ORIGINAL_SERVER_REQUEST_BYTES,
        chunkSize: 0,
        readOnly: false,
        readStream: false,
        progress: false,
        migration: false,
        trim: false,
        writeZeroes: false,
        blockStatus: false,
        // Unknown for an original server: whole chunks are the safe assumption.
        byteRanges: false,
        digests: false,
        writeScattered: false,
      };
    } else {
      info = await fetchInfo(caller).catch((error: unknown) => {
        if (error instanceof R3mapError && error.code === "ERR_NOT_SUPPORTED") {
          throw new R3mapError(
            "ERR_NOT_SUPPORTED",
            `${options.baseUrl} does not report its size (an original r3map server?); pass the size (size option or ?size= in the URI)`,
            { cause: error },
          );
        }
        throw error;
      });
      // Never above what this client's transport accepts in one message.
      info.maxRequestBytes = Math.min(info.maxRequestBytes, requested ?? DEFAULT_MAX_REQUEST_BYTES);
    }
    return { caller, info };
  } catch (error) {
    pool.close();
    throw error;
  }
}

async function fetchInfo(caller: Caller): Promise<RemoteInfo> {
  const reply = await caller.call(BackendService, "GetInfo", "idempotent", (client, options) =>
    client.getInfo({}, options),
  );
  const has = (capability: Capability) => reply.capabilities.includes(capability);
  return {
    size: Number(reply.size),
    maxRequestBytes: reply.maxRequestBytes || DEFAULT_MAX_REQUEST_BYTES,
    chunkSize: reply.chunkSize,
    readOnly: has(Capability.READ_ONLY),
    readStream: has(Capability.READ_STREAM),
    progress: has(Capability.PROGRESS),
    migration: has(Capability.MIGRATION),
    trim: has(Capability.TRIM),
    writeZeroes: has(Capability.WRITE_ZEROES),
    blockStatus: has(Capability.BLOCK_STATUS),
    byteRanges: has(Capability.BYTE_RANGES),
    digests: has(Capability.DIGESTS),
    writeScattered: has(Capability.WRITE_SCATTERED),
  };
}

/** The ReadAt of the original protocol, served by both its Backend and its Seeder service. */
type ReadAtService = typeof BackendServiceDesc | typeof SeederServiceDesc;

/**
 * Fills `buffer` from `offset` with ReadAt calls of at most the server's cap,
 * concurrently, checking each reply is exactly as long as asked.
 */
export async function readAtInPieces(
  caller: Caller,
  info: RemoteInfo,
  service: ReadAtService,
  what: string,
  buffer: Uint8Array,
  offset: number,
  options: PerCallOptions,
): Promise<void> {
  caller.assertOpen("readAt");
  checkRange(info.size, offset, buffer.length);
  await Promise.all(
    pieces(offset, buffer.length, info.maxRequestBytes).map(async ([start, length]) => {
      const reply = await caller.call(
        service,
        what,
        "idempotent",
        (client, call) => client.readAt({ Length: length, Off: BigInt(start) }, call),
        options,
      );
      if (reply.N !== length || reply.P.length !== length) {
        throw new R3mapError(
          "ERR_PROTOCOL",
          `${what} of ${length} bytes at ${start} returned ${reply.P.length} bytes (N=${reply.N})`,
        );
      }
      buffer.set(reply.P, start - offset);
    }),
  );
}

/** Splits `[offset, offset + length)` into pieces of at most `cap` bytes. */
export function pieces(offset: number, length: number, cap: number): Array<[start: number, length: number]> {
  const out: Array<[number, number]> = [];
  for (let done = 0; done < length; done += cap) out.push([offset + done, Math.min(cap, length - done)]);
  return out;
}

/**
 * A Backend on an r3map server (ours, or the original Go one given the size),
 * reached over gRPC or Connect on a pool of HTTP/2 connections.
 *
 * Retries: ReadAt, Sync and GetInfo are retried after transient
 * failures (they have no side effects, or repeat harmlessly). WriteAt is
 * retried only when the request provably never left (connection refused):
 * writing the same bytes twice is idempotent by itself, but a first attempt
 * still queued on the server could land after a later write to the same range
 * that the caller issued once the retry succeeded, undoing it.
 */
export class ConnectBackend implements Backend {
  readonly size: number;
  readonly readOnly: boolean;
  /** The server's backend takes any byte range (GetInfo capabilities). */
  readonly byteRanges: boolean;
  readonly info: RemoteInfo;
  /** Present when the server's backend can trim (GetInfo capabilities). */
  readonly trim: ((offset: number, length: number, options?: PerCallOptions) => Promise<void>) | undefined;
  /** Present when the server's backend writes zeros without being sent them. */
  readonly writeZeroes:
    | ((offset: number, length: number, options?: PerCallOptions) => Promise<void>)
    | undefined;
  /** Present when the server's backend reports allocation. */
  readonly blockStatus:
    | ((offset: number, length: number, options?: PerCallOptions) => Promise<Extent[]>)
    | undefined;
  /**
   * Present when the server computes digests of its own copy: comparing it
   * with a local copy then moves digests, not data (see `DigestSource`).
   */
  readonly digests: DigestSource | undefined;
  /** Present when the server takes several ranges per write call (`WriteScattered`). */
  readonly writeScattered:
    | ((pieces: readonly ScatteredPiece[], options?: PerCallOptions) => Promise<void>)
    | undefined;
  readonly #caller: Caller;
  #closing: Promise<void> | undefined;

  protected constructor(caller: Caller, info: RemoteInfo) {
    this.#caller = caller;
    this.info = info;
    this.size = info.size;
    this.readOnly = info.readOnly;
    this.byteRanges = info.byteRanges;
    // Like WriteAt, these change data: sent again only when never sent (see the class comment).
    this.trim = info.trim
      ? (offset, length, options) => this.#ranged("Trim", offset, length, options)
      : undefined;
    this.writeZeroes = info.writeZeroes
      ? (offset, length, options) => this.#ranged("WriteZeroes", offset, length, options)
      : undefined;
    this.blockStatus = info.blockStatus
      ? async (offset, length, options = {}) => {
          this.#caller.assertOpen("blockStatus");
          checkRange(this.size, offset, length);
          const reply = await this.#caller.call(
            BackendService,
            "BlockStatus",
            "idempotent",
            (client, call) => client.blockStatus({ offset: BigInt(offset), length: BigInt(length) }, call),
            options,
          );
          return reply.extents.map((e) => ({
            offset: Number(e.offset),
            length: Number(e.length),
            zero: e.zero,
            hole: e.hole,
          }));
        }
      : undefined;
    this.digests = info.digests
      ? (request, options = {}) =>
          collectDigests(request, this.size, (part) =>
            this.#caller.stream(
              BackendService,
              "Digests",
              (client, call) =>
                client.digests(
                  {
                    chunkSize: part.chunkSize,
                    algorithm: algorithmToWire(part.algorithm),
                    ranges: part.ranges.map((r) => ({ first: BigInt(r.first), end: BigInt(r.end) })),
                  },
                  call,
                ),
              options,
            ),
          )
      : undefined;
    this.writeScattered =
      info.writeScattered && !info.readOnly
        ? (pieces, options) => this.#writeScattered(pieces, options)
        : undefined;
  }

  /** Sends pieces in calls of at most the server's per-call limit (a piece larger than it goes alone, split). */
  async #writeScattered(pieces: readonly ScatteredPiece[], options: PerCallOptions = {}): Promise<void> {
    this.#caller.assertOpen("writeScattered");
    if (this.readOnly) throw new R3mapError("ERR_READ_ONLY", "the server serves this resource read-only");
    const cap = this.info.maxRequestBytes;
    const calls: ScatteredPiece[][] = [];
    let current: ScatteredPiece[] = [];
    let bytes = 0;
    for (const piece of pieces) {
      checkRange(this.size, piece.offset, piece.data.length);
      if (piece.data.length > cap) {
        await this.writeAt(piece.data, piece.offset, options);
        continue;
      }
      if (bytes + piece.data.length > cap) {
        calls.push(current);
        current = [];
        bytes = 0;
      }
      current.push(piece);
      bytes += piece.data.length;
    }
    if (current.length > 0) calls.push(current);
    await Promise.all(
      calls.map(async (call) => {
        const expected = call.reduce((total, piece) => total + piece.data.length, 0);
        const reply = await this.#caller.call(
          BackendService,
          "WriteScattered",
          "unsent",
          (client, perCall) =>
            client.writeScattered(
              { pieces: call.map((p) => ({ offset: BigInt(p.offset), data: p.data })) },
              perCall,
            ),
          options,
        );
        if (reply.written !== BigInt(expected)) {
          throw new R3mapError(
            "ERR_PROTOCOL",
            `WriteScattered of ${expected} bytes reported ${reply.written} written`,
          );
        }
      }),
    );
  }

  async #ranged(
    what: "Trim" | "WriteZeroes",
    offset: number,
    length: number,
    options: PerCallOptions = {},
  ): Promise<void> {
    this.#caller.assertOpen(what);
    if (this.readOnly) throw new R3mapError("ERR_READ_ONLY", "the server serves this resource read-only");
    checkRange(this.size, offset, length);
    const request = { offset: BigInt(offset), length: BigInt(length) };
    await this.#caller.call(
      BackendService,
      what,
      "unsent",
      async (client, call): Promise<void> => {
        if (what === "Trim") await client.trim(request, call);
        else await client.writeZeroes(request, call);
      },
      options,
    );
  }

  /** Connects (every session of the pool) and learns the size unless given. */
  static async connect(options: ConnectClientOptions): Promise<ConnectBackend> {
    const { caller, info } = await openCaller(options);
    return new ConnectBackend(caller, info);
  }

  async readAt(buffer: Uint8Array, offset: number, options: PerCallOptions = {}): Promise<void> {
    await readAtInPieces(this.#caller, this.info, BackendServiceDesc, "ReadAt", buffer, offset, options);
  }

  async writeAt(buffer: Uint8Array, offset: number, options: PerCallOptions = {}): Promise<void> {
    this.#caller.assertOpen("writeAt");
    if (this.readOnly) throw new R3mapError("ERR_READ_ONLY", "the server serves this resource read-only");
    checkRange(this.size, offset, buffer.length);
    await Promise.all(
      pieces(offset, buffer.length, this.info.maxRequestBytes).map(async ([start, length]) => {
        const P = buffer.subarray(start - offset, start - offset + length);
        const reply = await this.#caller.call(
          BackendServiceDesc,
          "WriteAt",
          "unsent",
          (client, call) => client.writeAt({ Off: BigInt(start), P }, call),
          options,
        );
        if (reply.Length !== length) {
          throw new R3mapError(
            "ERR_PROTOCOL",
            `WriteAt of ${length} bytes at ${start} reported ${reply.Length} bytes written`,
          );
        }
      }),
    );
  }

  async sync(options: PerCallOptions = {}): Promise<void> {
    await this.#caller.call(
      BackendServiceDesc,
      "Sync",
      "idempotent",
      (client, call) => client.sync({}, call),
      options,
    );
  }

  /**
   * Reads `[offset, offset + length)` as one server stream, yielding pieces of
   * at most `chunkSize` bytes in order (r3map servers only).
   */
  async *readStream(
    offset: number,
    length: number,
    options: PerCallOptions & { chunkSize?: number } = {},
  ): AsyncGenerator<{ offset: number; data: Uint8Array }> {
    this.#caller.assertOpen("readStream");
    checkRange(this.size, offset, length);
    const messages = this.#caller.stream(
      BackendService,
      "ReadStream",
      (client, call) =>
        client.readStream(
          { offset: BigInt(offset), length: BigInt(length), chunkSize: options.chunkSize ?? 0 },
          call,
        ),
      options,
    );
    let expected = offset;
    for await (const message of messages) {
      if (Number(message.offset) !== expected || expected + message.data.length > offset + length) {
        throw new R3mapError(
          "ERR_PROTOCOL",
          `ReadStream sent ${message.data.length} bytes at ${message.offset}, expected them at ${expected}`,
        );
      }
      expected += message.data.length;
      yield { offset: Number(message.offset), data: message.data };
    }
    if (expected !== offset + length) {
      throw new R3mapError("ERR_PROTOCOL", `ReadStream ended at ${expected}, before ${offset + length}`);
    }
  }

  /** Reports the server's progress every `intervalMs` until `signal` aborts (r3map servers only). */
  async *watchProgress(options: PerCallOptions & { intervalMs?: number } = {}): AsyncGenerator<Progress> {
    this.#caller.assertOpen("watchProgress");
    for await (const reply of this.#caller.stream(
      BackendService,
      "WatchProgress",
      (client, call) => client.watchProgress({ intervalMs: options.intervalMs ?? 0 }, call),
      options,
      { deadline: false },
    )) {
      const p = reply.progress;
      if (!p) continue;
      yield {
        chunksTotal: Number(p.chunksTotal),
        chunksLocal: Number(p.chunksLocal),
        bytesPulled: Number(p.bytesPulled),
        bytesPushed: Number(p.bytesPushed),
        dirtyChunks: Number(p.dirtyChunks),
        fetches: Number(p.fetches),
        meanFetchMs: p.meanFetchMs,
      };
    }
  }

  /** Waits for running calls, then closes the connections. Idempotent; the server's resource stays open. */
  close(): Promise<void> {
    this.#closing ??= this.#caller.close();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
