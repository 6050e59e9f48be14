import * as net from "node:net";
import type { Duplex } from "node:stream";
import * as tls from "node:tls";
import { R3mapError, TypedEmitter } from "@r3map/core";
import { BufferPool } from "./buffer-pool.js";
import { DEFAULT_MAX_BLOCK } from "./protocol.js";
import { ConnectionBudget, ServerBudget } from "./reply-budget.js";
import { type NbdExport, ServedExport } from "./served-export.js";
import { type HandshakeConfig, serverHandshake } from "./server-handshake.js";
import { ServerSession } from "./server-session.js";

const MiB = 1024 * 1024;

export interface NbdServerOptions {
  exports: NbdExport[];
  /** Certificate and key for STARTTLS (node `tls` options). Without it, STARTTLS is refused. */
  tls?: tls.SecureContextOptions & { requestCert?: boolean; rejectUnauthorized?: boolean };
  /** Refuse every option but STARTTLS until TLS is active (FORCEDTLS mode). Default: false. */
  tlsRequired?: boolean;
  /** Largest READ/WRITE/CACHE length accepted, advertised as the maximum block size. Default 32 MiB. */
  maxRequestSize?: number;
  /**
   * Requests per connection taken in and not yet answered — executing, or
   * their reply not yet handed to the kernel; reading pauses beyond it (in
   * the handshake: unsent option replies). Default 64.
   */
  maxInFlight?: number;
  /**
   * Bytes per connection those requests hold — payloads, reply data, and
   * 512 bytes each for what a queued reply costs besides; reading pauses
   * beyond it. Default 64 MiB.
   */
  maxBufferedBytes?: number;
  /**
   * Payload and READ data bytes of all connections together (requests
   * without data never wait for it, so one client cannot keep others from
   * negotiating). Default 256 MiB.
   */
  maxTotalBufferedBytes?: number;
  /** Connections served at once; more are told why and refused during negotiation. Default 256. */
  maxConnections?: number;
  /** Options one negotiation may send; a client sending more is dropped. Default 1024. */
  maxHandshakeOptions?: number;
  /** A client that has not finished negotiating after this long is dropped. Default 30 s. */
  handshakeTimeoutMs?: number;
  /**
   * A client that stops in the middle of a request (a WRITE whose payload
   * stops arriving) or stops reading its replies is dropped after this long
   * without progress. Default 30 s.
   */
  stallTimeoutMs?: number;
  /** A client that sends nothing and waits for nothing for this long is disconnected. Default 0: never. */
  idleTimeoutMs?: number;
  /** How long `close()` waits for in-flight requests before dropping connections. Default 30 s. */
  closeTimeoutMs?: number;
}

export interface NbdServerEvents {
  /** A client entered transmission on an export. */
  session: [info: { export: string; remote: string }];
  /** A connection ended; `error` says why when it was not a clean disconnect. */
  disconnect: [info: { remote: string; error?: Error }];
}

interface Connection {
  stream: Duplex;
  session?: ServerSession;
  done: Promise<void>;
}

/**
 * An NBD server (fixed newstyle) serving Backends as named exports over TCP,
 * UNIX sockets or any connected stream, with optional STARTTLS.
 */
export class NbdServer extends TypedEmitter<NbdServerEvents> {
  readonly #exports = new Map<string, ServedExport>();
  readonly #options: Required<Omit<NbdServerOptions, "exports" | "tls">>;
  readonly #handshake: Omit<HandshakeConfig, "refusal" | "budget">;
  readonly #connections = new Set<Connection>();
  readonly #listeners: net.Server[] = [];
  readonly #pool = new BufferPool();
  readonly #budget: ServerBudget;
  #closing: Promise<void> | undefined;

  constructor(options: NbdServerOptions) {
    super();
    this.#options = {
      tlsRequired: options.tlsRequired ?? false,
      maxRequestSize: options.maxRequestSize ?? DEFAULT_MAX_BLOCK,
      maxInFlight: options.maxInFlight ?? 64,
      maxBufferedBytes: options.maxBufferedBytes ?? 64 * MiB,
      maxTotalBufferedBytes: options.maxTotalBufferedBytes ?? 256 * MiB,
      maxConnections: options.maxConnections ?? 256,
      maxHandshakeOptions: options.maxHandshakeOptions ?? 1024,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 30_000,
      stallTimeoutMs: options.stallTimeoutMs ?? 30_000,
      idleTimeoutMs: options.idleTimeoutMs ?? 0,
      closeTimeoutMs: options.closeTimeoutMs ?? 30_000,
    };
    const o = this.#options;
    for (const [name, value] of Object.entries(o)) {
      const least = name === "idleTimeoutMs" ? 0 : 1;
      if (typeof value === "number" && (!Number.isSafeInteger(value) || value < least)) {
        throw new R3mapError(
          "ERR_INVALID_ARGUMENT",
          `NbdServer option ${name} must be ${least === 0 ? "a non-negative" : "a positive"} integer, got ${value}`,
        );
      }
    }
    this.#budget = new ServerBudget(o.maxTotalBufferedBytes);
    if (o.maxRequestSize > 0xffffffff) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        "maxRequestSize must fit in 32 bits (NBD lengths are u32)",
      );
    }
    if (o.tlsRequired && !options.tls) {
      throw new R3mapError("ERR_INVALID_ARGUMENT", "tlsRequired needs a tls certificate and key");
    }
    if (options.exports.length === 0)
      throw new R3mapError("ERR_INVALID_ARGUMENT", "NbdServer needs at least one export");
    for (const spec of options.exports) {
      if (this.#exports.has(spec.name))
        throw new R3mapError("ERR_INVALID_ARGUMENT", `export "${spec.name}" is listed twice`);
      this.#exports.set(spec.name, new ServedExport(spec, o.maxRequestSize));
    }
    const { requestCert, rejectUnauthorized, ...context } = options.tls ?? {};
    this.#handshake = {
      lookup: (name) => this.#exports.get(name),
      exports: () => [...this.#exports.values()],
      tls: options.tls ? tls.createSecureContext(context) : undefined,
      tlsOptions: {
        ...(requestCert === undefined ? {} : { requestCert }),
        ...(rejectUnauthorized === undefined ? {} : { rejectUnauthorized }),
      },
      tlsRequired: o.tlsRequired,
      // Large enough for a whole maximal WRITE header + payload to queue.
      highWater: 1024 * 1024,
      allocate: (size) => this.#pool.get(size),
      maxOptions: o.maxHandshakeOptions,
    };
  }

  /**
   * Data the connections hold now: WRITE payloads and READ data of requests
   * not yet answered (see `maxTotalBufferedBytes`); 0 once every reply has
   * been sent.
   */
  get bufferedBytes(): number {
    return this.#budget.used;
  }

  /** Connections currently open (negotiating or transmitting). */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /**
   * Listens on TCP (`{ port, host }`, port 0 picks a free one) or a UNIX
   * socket (`{ path }`). Resolves with the bound address.
   */
  async listen(
    where: { port?: number; host?: string } | { path: string },
  ): Promise<net.AddressInfo | string> {
    if (this.#closing) throw new R3mapError("ERR_CLOSED", "the NBD server is closed");
    const listener = net.createServer({ noDelay: true }, (socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      listener.once("error", (error) =>
        reject(new R3mapError("ERR_IO", `NBD server cannot listen: ${error.message}`, { cause: error })),
      );
      if ("path" in where) listener.listen(where.path, resolve);
      else listener.listen(where.port ?? 10809, where.host ?? "127.0.0.1", resolve);
    });
    this.#listeners.push(listener);
    const address = listener.address();
    if (address === null) throw new R3mapError("ERR_IO", "NBD server has no address after listen");
    return address;
  }

  /** Serves one already-connected stream (an accepted socket, one end of a socketpair, a proxy). */
  serve(stream: Duplex): void {
    if (this.#closing) {
      stream.destroy();
      return;
    }
    if (stream instanceof net.Socket) stream.setNoDelay(true);
    const full = this.#connections.size >= this.#options.maxConnections;
    // Refusals are explained during negotiation, but a flood of them is simply cut off.
    if (this.#connections.size >= 2 * this.#options.maxConnections) {
      stream.destroy();
      return;
    }
    const connection: Connection = { stream, done: Promise.resolve() };
    this.#connections.add(connection);
    connection.done = this.#run(connection, full);
  }

  async #run(connection: Connection, full: boolean): Promise<void> {
    const remote = describe(connection.stream);
    let failure: Error | undefined;
    let stream = connection.stream;
    stream.on("error", () => {}); // reported through the handshake/session, not as an unhandled event
    const timer = setTimeout(() => stream.destroy(), this.#options.handshakeTimeoutMs);
    try {
      const budget = new ConnectionBudget({
        maxRequests: this.#options.maxInFlight,
        maxBytes: this.#options.maxBufferedBytes,
      });
      stream.once("close", () => budget.close());
      const negotiated = await serverHandshake(stream, {
        ...this.#handshake,
        budget,
        ...(full
          ? {
              refusal: `the server is at its limit of ${this.#options.maxConnections} connections; try again later`,
            }
          : {}),
      });
      clearTimeout(timer);
      if (negotiated) {
        stream = negotiated.stream;
        stream.on("error", () => {});
        connection.stream = stream;
        const session = new ServerSession(negotiated, this.#options, this.#pool, this.#budget);
        connection.session = session;
        this.emit("session", { export: negotiated.served.name, remote });
        if (this.#closing) void session.shutdown();
        failure = await session.run();
      }
    } catch (error) {
      failure = error instanceof Error ? error : new Error(String(error));
    } finally {
      clearTimeout(timer);
      await new Promise<void>((resolve) => {
        if (stream.destroyed) return resolve();
        stream.once("close", () => resolve());
        if (failure) stream.destroy();
        else stream.end();
        // A peer that never reads its last bytes cannot hold the socket open.
        setTimeout(() => stream.destroy(), 5_000).unref();
      });
      if (connection.stream !== stream || !connection.stream.destroyed) connection.stream.destroy();
      this.#connections.delete(connection);
      this.emit("disconnect", failure ? { remote, error: failure } : { remote });
    }
  }

  /**
   * Stops accepting, lets in-flight requests finish and their replies go out
   * (later requests get ESHUTDOWN), then closes every connection. Idempotent.
   * The backends stay open: they belong to the caller.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const stopped = this.#listeners.map(
        (listener) => new Promise<void>((resolve) => listener.close(() => resolve())),
      );
      const connections = [...this.#connections];
      await Promise.race([
        Promise.all(
          connections.map(async (connection) => {
            if (!connection.session) connection.stream.destroy();
            else await connection.session.shutdown();
            // Flush the last replies, then drop the connection so its read loop ends.
            connection.stream.end(() => connection.stream.destroy());
            await connection.done;
          }),
        ),
        new Promise<void>((resolve) => setTimeout(resolve, this.#options.closeTimeoutMs).unref()),
      ]);
      for (const connection of this.#connections) connection.stream.destroy();
      await Promise.all([...this.#connections].map((connection) => connection.done));
      await Promise.all(stopped);
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function describe(stream: Duplex): string {
  if (stream instanceof net.Socket) {
    return stream.remoteAddress ? `${stream.remoteAddress}:${stream.remotePort}` : "unix socket";
  }
  return "stream";
}
