import type * as http2 from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { lookupWithoutThreadpool, R3mapError } from "@r3map/core";
import { bearerTokenInterceptor } from "./auth.js";
import { tlsFailure } from "./errors.js";
import { SESSION_MEMORY_MB, STREAM_WINDOW_BYTES, widenWindow } from "./flow-control.js";
import type { ClientTlsOptions } from "./tls-options.js";

export interface SessionPoolOptions {
  /** `http://host:port` (h2c) or `https://host:port` (TLS). */
  baseUrl: string;
  /** `grpc` (default; what the original Go servers speak) or `connect`. */
  protocol?: "grpc" | "connect";
  /** HTTP/2 connections to open; calls are spread across them (default 1). */
  sessions?: number;
  tls?: ClientTlsOptions;
  /** Bearer token sent with every call. */
  token?: string;
  /** Largest message accepted or sent, in bytes. */
  maxMessageBytes: number;
  interceptors?: Interceptor[];
}

/** Connect's session manager, with wide flow-control windows. */
class WideWindowSessionManager extends Http2SessionManager {
  override async request(
    method: string,
    path: string,
    headers: http2.OutgoingHttpHeaders,
    options: Omit<http2.ClientSessionRequestOptions, "signal">,
  ): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(method, path, headers, options);
    widenWindow(stream.session);
    return stream;
  }
}

interface Member {
  readonly manager: Http2SessionManager;
  readonly transport: Transport;
  readonly clients: Map<DescService, unknown>;
  inFlight: number;
}

/**
 * Several HTTP/2 connections to one server. One connection serialises its
 * frames on one socket (and Node handles it on one thread's worth of
 * framing), so spreading calls over a few helps large transfers.
 */
export class SessionPool {
  readonly #members: Member[];
  #next = 0;

  constructor(readonly options: SessionPoolOptions) {
    const count = options.sessions ?? 1;
    if (!Number.isSafeInteger(count) || count < 1 || count > 64) {
      throw new R3mapError("ERR_INVALID_ARGUMENT", `sessions must be an integer from 1 to 64, got ${count}`);
    }
    const secure = options.baseUrl.startsWith("https:");
    if (!secure && options.tls) {
      throw new R3mapError("ERR_INVALID_ARGUMENT", "TLS options need an https:// (r3map+https://) address");
    }
    const nodeOptions = secure
      ? {
          ...(options.tls?.ca === undefined ? {} : { ca: options.tls.ca }),
          ...(options.tls?.cert === undefined ? {} : { cert: options.tls.cert }),
          ...(options.tls?.key === undefined ? {} : { key: options.tls.key }),
          ...(options.tls?.servername === undefined ? {} : { servername: options.tls.servername }),
        }
      : {};
    const interceptors = [
      ...(options.token === undefined ? [] : [bearerTokenInterceptor(options.token)]),
      ...(options.interceptors ?? []),
    ];
    this.#members = Array.from({ length: count }, () => {
      // Pings find a dead connection before a call has to wait for its deadline.
      const manager = new WideWindowSessionManager(
        options.baseUrl,
        { pingIntervalMs: 15_000, pingTimeoutMs: 10_000 },
        // lookup: never getaddrinfo, which runs on the libuv threadpool that mount readers can exhaust.
        {
          ...nodeOptions,
          lookup: lookupWithoutThreadpool,
          settings: { initialWindowSize: STREAM_WINDOW_BYTES },
          // Writes queued on the connection count too: Node's default (10 MB) refused new streams
          // (ENHANCE_YOUR_CALM) once 32 WriteAt calls of 1 MiB were under way.
          maxSessionMemory: SESSION_MEMORY_MB,
        },
      );
      const common = {
        baseUrl: options.baseUrl,
        httpVersion: "2" as const,
        sessionManager: manager,
        interceptors,
        readMaxBytes: options.maxMessageBytes,
        writeMaxBytes: options.maxMessageBytes,
        // Chunk payloads are mostly incompressible; compressing costs more CPU than it saves.
        acceptCompression: [],
      };
      const transport =
        options.protocol === "connect" ? createConnectTransport(common) : createGrpcTransport(common);
      return { manager, transport, clients: new Map(), inFlight: 0 };
    });
  }

  get size(): number {
    return this.#members.length;
  }

  /**
   * Runs `call` with a client on the least busy connection (round robin among
   * equals), counting it as busy meanwhile.
   */
  async use<S extends DescService, T>(service: S, call: (client: Client<S>) => Promise<T>): Promise<T> {
    const member = this.#pick();
    let client = member.clients.get(service) as Client<S> | undefined;
    if (!client) {
      client = createClient(service, member.transport);
      member.clients.set(service, client);
    }
    member.inFlight++;
    try {
      return await call(client);
    } finally {
      member.inFlight--;
    }
  }

  #pick(): Member {
    const count = this.#members.length;
    let best = this.#members[this.#next % count]!;
    for (let i = 1; i < count; i++) {
      const member = this.#members[(this.#next + i) % count]!;
      if (member.inFlight < best.inFlight) best = member;
    }
    this.#next = (this.#next + 1) % count;
    return best;
  }

  /** Opens every connection now, so a wrong address or certificate shows at once. */
  async connect(): Promise<void> {
    const states = await Promise.all(this.#members.map((member) => member.manager.connect()));
    const failed = states.indexOf("error");
    if (failed >= 0) {
      const error = this.#members[failed]!.manager.error();
      const tls = tlsFailure(error, `connecting to ${this.options.baseUrl}`);
      if (tls) throw tls;
      throw new R3mapError(
        "ERR_REMOTE_UNREACHABLE",
        `cannot connect to ${this.options.baseUrl}: ${error instanceof Error ? error.message : String(error)}; check the address, that the server runs, and the TLS settings`,
        { cause: error },
      );
    }
  }

  /** Closes every connection; calls still running fail. */
  close(): void {
    for (const member of this.#members) member.manager.abort();
  }
}
