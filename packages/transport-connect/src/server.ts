import { setMaxListeners } from "node:events";
import * as http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { fromSystemError, R3mapError } from "@r3map/core";
import { CallLimits } from "./call-limits.js";
import { SESSION_MEMORY_MB, STREAM_WINDOW_BYTES, widenWindow } from "./flow-control.js";
import { type ConnectHandlerOptions, createConnectHandler, DEFAULT_STALL_TIMEOUT_MS } from "./handler.js";
import type { ServerTlsOptions } from "./tls-options.js";

export interface ConnectServerOptions extends ConnectHandlerOptions {
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 0: a free port, see `port` afterwards). */
  port?: number;
  /** A UNIX socket path to listen on instead of `host` and `port` (gRPC clients reach it as `unix:PATH`). */
  path?: string;
  /** TLS or mutual TLS; without it the server speaks HTTP/2 cleartext (h2c). */
  tls?: ServerTlsOptions;
  /** How long `close()` lets running calls finish before cutting them (default 5000 ms). */
  closeGraceMs?: number;
}

/**
 * Serves a Backend (and optionally a Seeder) over Connect, gRPC and gRPC-web
 * on HTTP/2: cleartext, TLS or mutual TLS, with bearer-token authentication,
 * message size limits, limits on calls and bytes in flight, and no
 * compression (chunk payloads do not compress well enough to pay for the
 * CPU). A connection that stays silent for `stallTimeoutMs` while a call of
 * it waits for the client (to send its request, or to read its answer) is
 * closed.
 */
export class ConnectServer {
  readonly #server: http2.Http2Server | http2.Http2SecureServer;
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #sockets = new Set<Socket>();
  readonly #shutdown: AbortController;
  readonly #graceMs: number;
  readonly #limits: CallLimits;
  #closing: Promise<void> | undefined;

  private constructor(
    server: http2.Http2Server | http2.Http2SecureServer,
    shutdown: AbortController,
    limits: CallLimits,
    options: ConnectServerOptions,
    readonly host: string,
    readonly port: number,
    /** The UNIX socket listened on, when `path` was given (then `host` and `port` mean nothing). */
    readonly path?: string,
  ) {
    this.#server = server;
    this.#shutdown = shutdown;
    this.#limits = limits;
    this.#graceMs = options.closeGraceMs ?? 5000;
    this.secure = options.tls !== undefined;
    const stallTimeoutMs = options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
    server.on("session", (session: http2.ServerHttp2Session) => {
      this.#sessions.add(session);
      widenWindow(session);
      session.once("close", () => this.#sessions.delete(session));
      // Fires after stallTimeoutMs without a frame either way; refreshed by any traffic.
      session.setTimeout(stallTimeoutMs, () => {
        if (limits.waitingOnClient(session)) session.destroy();
      });
    });
    // Raw connections, HTTP/1.1 ones included, so that close() can cut them all.
    server.on("connection", (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once("close", () => this.#sockets.delete(socket));
    });
  }

  readonly secure: boolean;

  /** Calls running now. */
  get callsInFlight(): number {
    return this.#limits.calls;
  }

  /** Bytes the running calls hold now (see `limits.maxBytesInFlight`). */
  get bytesInFlight(): number {
    return this.#limits.bytesInFlight;
  }

  /** HTTP/2 connections open now. */
  get openSessions(): number {
    return this.#sessions.size;
  }

  /** `r3map+h2c://host:port` or `r3map+https://host:port`, without parameters. */
  get url(): string {
    const host = this.host.includes(":") ? `[${this.host}]` : this.host;
    return `r3map+${this.secure ? "https" : "h2c"}://${host}:${this.port}`;
  }

  /** The HTTP base URL Connect and gRPC clients use. */
  get baseUrl(): string {
    const host = this.host.includes(":") ? `[${this.host}]` : this.host;
    return `${this.secure ? "https" : "http"}://${host}:${this.port}`;
  }

  static async listen(options: ConnectServerOptions): Promise<ConnectServer> {
    const shutdown = new AbortController();
    // Every running stream listens on it; there may be thousands.
    setMaxListeners(0, shutdown.signal);
    const server = options.tls
      ? http2.createSecureServer({
          cert: options.tls.cert,
          key: options.tls.key,
          ...(options.tls.ca === undefined ? {} : { ca: options.tls.ca }),
          requestCert: options.tls.ca !== undefined && options.tls.requireClientCert !== false,
          rejectUnauthorized: options.tls.ca !== undefined && options.tls.requireClientCert !== false,
          // gRPC-web and Connect clients in browsers may come over HTTP/1.1.
          allowHTTP1: true,
          settings: { initialWindowSize: STREAM_WINDOW_BYTES },
          maxSessionMemory: SESSION_MEMORY_MB,
        })
      : http2.createServer({
          settings: { initialWindowSize: STREAM_WINDOW_BYTES },
          maxSessionMemory: SESSION_MEMORY_MB,
        });
    const limits = new CallLimits(options.limits);
    server.on("request", createConnectHandler(options, shutdown.signal, limits));
    const host = options.host ?? "127.0.0.1";
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      const listening = () => {
        server.off("error", reject);
        resolve();
      };
      if (options.path === undefined) server.listen(options.port ?? 0, host, listening);
      else server.listen(options.path, listening);
    }).catch((error: unknown) => {
      throw fromSystemError(error, `cannot listen on ${options.path ?? `${host}:${options.port ?? 0}`}`);
    });
    const address = server.address();
    const port = typeof address === "string" || address === null ? 0 : (address as AddressInfo).port;
    return new ConnectServer(server, shutdown, limits, options, host, port, options.path);
  }

  /**
   * Stops accepting connections and ends open streams (WatchProgress,
   * ReadStream) at once, lets running unary calls finish for up to
   * `closeGraceMs`, then cuts the connections. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      for (const session of this.#sessions) session.close();
      // Streams that never end on their own (WatchProgress) end now.
      this.#shutdown.abort(new R3mapError("ERR_CLOSED", "the server is shutting down"));
      const timer = setTimeout(() => {
        for (const socket of this.#sockets) socket.destroy();
      }, this.#graceMs);
      timer.unref();
    });
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
