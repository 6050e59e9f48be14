import { setMaxListeners } from "node:events";
import * as http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import type { Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { fromSystemError, R3mapError } from "@r3map/core";
import { bearerAuthInterceptor, type TokenCheck } from "./auth.js";
import { STREAM_WINDOW_BYTES, widenWindow } from "./flow-control.js";
import { DEFAULT_MAX_REQUEST_BYTES, MESSAGE_OVERHEAD_BYTES } from "./limits.js";
import { r3mapRoutes, type ServeOptions } from "./routes.js";
import type { ServerTlsOptions } from "./tls-options.js";

export interface ConnectServerOptions extends ServeOptions {
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 0: a free port, see `port` afterwards). */
  port?: number;
  /** TLS or mutual TLS; without it the server speaks HTTP/2 cleartext (h2c). */
  tls?: ServerTlsOptions;
  /** Bearer tokens the server accepts; without it, calls are not authenticated. */
  tokens?: TokenCheck;
  /** Protocols served (default all three). */
  protocols?: { connect?: boolean; grpc?: boolean; grpcWeb?: boolean };
  /** Extra server interceptors, run after authentication. */
  interceptors?: Interceptor[];
  /** How long `close()` lets running calls finish before cutting them (default 5000 ms). */
  closeGraceMs?: number;
}

/**
 * Serves a Backend (and optionally a Seeder) over Connect, gRPC and gRPC-web
 * on HTTP/2: cleartext, TLS or mutual TLS, with bearer-token authentication,
 * message size limits and no compression (chunk payloads do not compress well
 * enough to pay for the CPU).
 */
export class ConnectServer {
  readonly #server: http2.Http2Server | http2.Http2SecureServer;
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #sockets = new Set<Socket>();
  readonly #shutdown: AbortController;
  readonly #graceMs: number;
  #closing: Promise<void> | undefined;

  private constructor(
    server: http2.Http2Server | http2.Http2SecureServer,
    shutdown: AbortController,
    graceMs: number,
    readonly host: string,
    readonly port: number,
    readonly secure: boolean,
  ) {
    this.#server = server;
    this.#shutdown = shutdown;
    this.#graceMs = graceMs;
    server.on("session", (session: http2.ServerHttp2Session) => {
      this.#sessions.add(session);
      widenWindow(session);
      session.once("close", () => this.#sessions.delete(session));
    });
    // Raw connections, HTTP/1.1 ones included, so that close() can cut them all.
    server.on("connection", (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once("close", () => this.#sockets.delete(socket));
    });
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
        })
      : http2.createServer({ settings: { initialWindowSize: STREAM_WINDOW_BYTES } });
    const handler = createConnectHandler(options, shutdown.signal);
    const drainBytes = 2 * ((options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES) + MESSAGE_OVERHEAD_BYTES);
    server.on("request", (request: http2.Http2ServerRequest, response: http2.Http2ServerResponse) => {
      // The stream's writable side finishes once the reply (with trailers) is sent.
      request.stream?.once("finish", () => drainUnreadRequest(request, drainBytes));
      handler(request, response);
    });
    const host = options.host ?? "127.0.0.1";
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port ?? 0, host, () => {
        server.off("error", reject);
        resolve();
      });
    }).catch((error: unknown) => {
      throw fromSystemError(error, `cannot listen on ${host}:${options.port ?? 0}`);
    });
    const port = (server.address() as AddressInfo).port;
    return new ConnectServer(
      server,
      shutdown,
      options.closeGraceMs ?? 5000,
      host,
      port,
      options.tls !== undefined,
    );
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

/**
 * When the server answered before reading the whole request (a message over
 * the size limit), the client may still be sending, blocked on flow control,
 * so the stream would stay half open and hold the connection (and a graceful
 * close) forever. Reads and discards the rest, up to `drainBytes`, so the
 * client can finish and read the answer; beyond that, or after a second,
 * resets the stream. Resetting at once could drop the unflushed trailers.
 */
function drainUnreadRequest(request: http2.Http2ServerRequest, drainBytes: number): void {
  const stream = (request as { stream?: http2.ServerHttp2Stream }).stream;
  if (!stream || stream.readableEnded || stream.destroyed || stream.closed) return;
  let drained = 0;
  const reset = () => {
    if (!stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
  };
  const timer = setTimeout(reset, 1000);
  timer.unref();
  stream.once("close", () => clearTimeout(timer));
  stream.on("data", (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > drainBytes) reset();
  });
  stream.resume();
}

/**
 * The request handler, for embedding r3map's services in a server of your
 * own (`http2.createServer(handler)`); `ConnectServer` uses it.
 */
export function createConnectHandler(
  options: ConnectServerOptions,
  shutdownSignal?: AbortSignal,
): (request: http2.Http2ServerRequest, response: http2.Http2ServerResponse) => void {
  const cap = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  const interceptors: Interceptor[] = [];
  if (options.tokens !== undefined) interceptors.push(bearerAuthInterceptor(options.tokens));
  interceptors.push(...(options.interceptors ?? []));
  return connectNodeAdapter({
    routes: r3mapRoutes(options, shutdownSignal),
    interceptors,
    connect: options.protocols?.connect ?? true,
    grpc: options.protocols?.grpc ?? true,
    grpcWeb: options.protocols?.grpcWeb ?? true,
    // A message may carry one capped payload plus its framing; anything larger is refused unread.
    readMaxBytes: cap + MESSAGE_OVERHEAD_BYTES,
    writeMaxBytes: cap + MESSAGE_OVERHEAD_BYTES,
    acceptCompression: [],
  });
}
