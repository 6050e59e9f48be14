import type * as tls from "node:tls";
import { R3mapError } from "@r3map/core";

/** Where and how to reach an NBD server. */
export interface NbdClientOptions {
  /** TCP host (default 127.0.0.1) and port (default 10809). Ignored when `path` is set. */
  host?: string;
  port?: number;
  /** UNIX socket path. */
  path?: string;
  /** Export name; "" (the default) selects the server's default export. */
  export?: string;
  /** Upgrade with STARTTLS; `true` uses the system CAs, an object passes node `tls` options (ca, cert, key, rejectUnauthorized). */
  tls?: boolean | tls.ConnectionOptions;
  /** Connections to open when the server allows multi-conn (NBD_FLAG_CAN_MULTI_CONN). Default 1. */
  connections?: number;
  /**
   * Deadline of a request in ms, from the call to its answer: waits for a
   * reconnect and retries on a new connection included (a request that
   * reaches it fails with ERR_TIMEOUT). 0 disables. Default 30 000.
   */
  timeoutMs?: number;
  /** Deadline for connecting and negotiating, in ms. Default 10 000. */
  connectTimeoutMs?: number;
  /** Reconnect after a lost connection: attempts per request and backoff. Default 3 attempts, 100 ms doubling to 2 s. */
  retry?: { attempts?: number; delayMs?: number; maxDelayMs?: number };
  /** Largest request sent; larger ones are split. Default: the server's maximum block size, capped at 32 MiB. */
  maxRequestSize?: number;
  /** Requests outstanding per connection before further ones queue. Default 64. */
  maxInFlight?: number;
  /** Negotiate structured replies (default true); needed for blockStatus. */
  structuredReplies?: boolean;
}

export interface ResolvedClientOptions {
  host: string;
  port: number;
  path: string | undefined;
  export: string;
  tls: tls.ConnectionOptions | undefined;
  connections: number;
  timeoutMs: number;
  connectTimeoutMs: number;
  retry: { attempts: number; delayMs: number; maxDelayMs: number };
  maxRequestSize: number | undefined;
  maxInFlight: number;
  structuredReplies: boolean;
}

export function resolveClientOptions(options: NbdClientOptions): ResolvedClientOptions {
  const positive = (name: string, value: number | undefined, fallback: number, allowZero = false): number => {
    const v = value ?? fallback;
    if (!Number.isSafeInteger(v) || v < 0 || (v === 0 && !allowZero)) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `NBD client option ${name} must be a ${allowZero ? "non-negative" : "positive"} integer, got ${v}`,
      );
    }
    return v;
  };
  return {
    host: options.host ?? "127.0.0.1",
    port: positive("port", options.port, 10809),
    path: options.path,
    export: options.export ?? "",
    tls:
      options.tls === true
        ? {}
        : options.tls === false || options.tls === undefined
          ? undefined
          : options.tls,
    connections: positive("connections", options.connections, 1),
    timeoutMs: positive("timeoutMs", options.timeoutMs, 30_000, true),
    connectTimeoutMs: positive("connectTimeoutMs", options.connectTimeoutMs, 10_000),
    retry: {
      attempts: positive("retry.attempts", options.retry?.attempts, 3, true),
      delayMs: positive("retry.delayMs", options.retry?.delayMs, 100, true),
      maxDelayMs: positive("retry.maxDelayMs", options.retry?.maxDelayMs, 2_000, true),
    },
    maxRequestSize:
      options.maxRequestSize === undefined
        ? undefined
        : positive("maxRequestSize", options.maxRequestSize, 0),
    maxInFlight: positive("maxInFlight", options.maxInFlight, 64),
    structuredReplies: options.structuredReplies ?? true,
  };
}

/** "host:port/export" or "socket/export", for messages. */
export function describeTarget(o: ResolvedClientOptions): string {
  const where = o.path ?? `${o.host}:${o.port}`;
  return `${o.tls ? "nbds" : "nbd"} ${where} export "${o.export}"`;
}
