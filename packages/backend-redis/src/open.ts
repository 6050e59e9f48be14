import { isIP } from "node:net";
import type { ConnectionOptions } from "node:tls";
import {
  ArbitraryStage,
  type Backend,
  ChunkedStage,
  fileParam,
  flagParam,
  integerParam,
  R3mapError,
  sizeParam,
} from "@r3map/core";
import { Cluster, Redis, type RedisOptions } from "ioredis";
import { redisError } from "./errors.js";
import { RedisChunkStore } from "./store.js";

const DEFAULT_CHUNK = 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 5000;

/**
 * Opens a RedisChunkStore from a URI:
 *
 * ```
 * redis://[user[:password]@]host[:port][/db]?size=1GiB[&chunk=1MiB][&prefix=disk1:]
 * rediss://…                       TLS (&ca=/path/ca.pem &cert=… &key=… &servername=… &tlsInsecure=1)
 * redis+cluster://host:port/?size=…[&seed=host:port…]   Redis Cluster (rediss+cluster: with TLS)
 * ```
 *
 * Other parameters: `readOnly=1`; `timeoutMs=5000` (connect and per-command
 * deadline: an unreachable server fails calls with ERR_REMOTE_UNREACHABLE or
 * ERR_TIMEOUT within about this time, and the client keeps reconnecting in the
 * background, so calls after the server returns succeed); `wait=N` (sync waits
 * for N replicas with WAIT). A cluster needs one reachable node to discover the
 * others; more `seed`s help when it may be down (a URI cannot hold a comma
 * separated host list: WHATWG URL parsing rejects it).
 */
export async function openRedisStore(uri: string | URL): Promise<RedisChunkStore> {
  const url = typeof uri === "string" ? parseUrl(uri) : uri;
  const scheme = url.protocol.replace(/:$/, "").toLowerCase();
  if (!["redis", "rediss", "redis+cluster", "rediss+cluster"].includes(scheme)) {
    throw new R3mapError(
      "ERR_UNKNOWN_SCHEME",
      `not a Redis URI: ${scheme}: (use redis, rediss, redis+cluster or rediss+cluster)`,
    );
  }
  const cluster = scheme.endsWith("+cluster");
  const size = sizeParam(url, "size", true);
  const chunkSize = sizeParam(url, "chunk") ?? DEFAULT_CHUNK;
  const timeoutMs = integerParam(url, "timeoutMs", DEFAULT_TIMEOUT_MS, 1);
  const host = url.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1";
  const port = url.port === "" ? 6379 : Number(url.port);
  const db = url.pathname.replace(/^\/+|\/+$/g, "");
  if (db !== "" && (!/^\d+$/.test(db) || cluster)) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `"${db}" is not a database number${cluster ? " (a cluster has only database 0)" : ""}`,
    );
  }
  const common: RedisOptions = {
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    ...(scheme.startsWith("rediss") ? { tls: tlsOptions(url, host) } : {}),
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    // A command waiting for a lost connection fails after one reconnect attempt
    // instead of queueing forever; reconnecting itself goes on.
    maxRetriesPerRequest: 1,
    enableAutoPipelining: true,
    lazyConnect: true,
  };
  const retry = (attempt: number) => Math.min(attempt * 100, 1000);
  const client = cluster
    ? new Cluster([{ host, port }, ...url.searchParams.getAll("seed").map(parseSeed)], {
        redisOptions: common,
        enableAutoPipelining: true,
        lazyConnect: true,
        clusterRetryStrategy: retry,
        slotsRefreshTimeout: timeoutMs,
        maxRedirections: 8,
      })
    : new Redis({ ...common, host, port, db: db === "" ? 0 : Number(db), retryStrategy: retry });
  // Errors surface through the calls; an unhandled 'error' event would crash the process.
  // The last one explains a failed connect (connect() itself only says "Connection is closed").
  let lastError: unknown;
  client.on("error", (error: unknown) => {
    lastError = error;
  });
  try {
    await client.connect();
  } catch (error) {
    client.disconnect();
    throw redisError(
      lastError ?? error,
      `cannot connect to ${cluster ? "the Redis Cluster at " : "Redis at "}${host}:${port}`,
      false,
    );
  }
  const wait = url.searchParams.get("wait");
  return new RedisChunkStore(client, {
    size,
    chunkSize,
    prefix: url.searchParams.get("prefix") ?? "",
    readOnly: flagParam(url, "readOnly"),
    ...(wait === null ? {} : { waitReplicas: integerParam(url, "wait", 0, 0), waitTimeoutMs: timeoutMs }),
  });
}

/**
 * The Backend over a store: whole chunks are validated (ChunkedStage) and,
 * unless `wholeChunks`, any range is mapped onto them (ArbitraryStage).
 */
export function createRedisBackend(store: RedisChunkStore, options: { wholeChunks?: boolean } = {}): Backend {
  const chunked = new ChunkedStage(store, store.layout.chunkSize);
  return options.wholeChunks ? chunked : new ArbitraryStage(chunked, store.layout.chunkSize);
}

/** `openRedisStore` + `createRedisBackend`: what the registered URI schemes open. */
export async function openRedisBackend(uri: string | URL): Promise<Backend> {
  return createRedisBackend(await openRedisStore(uri));
}

function parseUrl(uri: string): URL {
  try {
    return new URL(uri);
  } catch (error) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `"${uri}" is not a URI (list extra cluster nodes as &seed=host:port)`,
      {
        cause: error,
      },
    );
  }
}

function parseSeed(seed: string): { host: string; port: number } {
  const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(seed);
  if (!match) throw new R3mapError("ERR_INVALID_ARGUMENT", `seed "${seed}" is not host:port`);
  return { host: match[1]!, port: Number(match[2]) };
}

function tlsOptions(url: URL, host: string): ConnectionOptions {
  const ca = fileParam(url, "ca");
  const cert = fileParam(url, "cert");
  const key = fileParam(url, "key");
  return {
    // SNI carries host names only; for an IP address the certificate is checked against the IP.
    ...(url.searchParams.get("servername") || !isIP(host)
      ? { servername: url.searchParams.get("servername") ?? host }
      : {}),
    rejectUnauthorized: !flagParam(url, "tlsInsecure"),
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
  };
}
