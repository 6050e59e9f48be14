import { isIP } from "node:net";
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
import cassandra from "cassandra-driver";
import { cassandraError } from "./errors.js";
import { CassandraChunkStore, quoteIdentifier } from "./store.js";

const DEFAULT_CHUNK = 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Opens a CassandraChunkStore from a URI:
 *
 * ```
 * cassandra://[user:password@]host[:port]/keyspace/table?size=1GiB[&chunk=1MiB][&prefix=disk1]
 *   [&consistency=localQuorum][&create=1][&replication=SimpleStrategy:1]
 *   [&localDataCenter=datacenter1][&contactPoint=host:port…][&timeoutMs=10000][&readOnly=1]
 * cassandras://…  TLS [&ca=/path/ca.pem][&cert=…&key=…][&servername=…][&tlsInsecure=1]
 * ```
 *
 * `create=1` creates the keyspace (with `replication`: `SimpleStrategy:RF` or
 * `NetworkTopologyStrategy:dc1=3,dc2=2`; default SimpleStrategy RF 1) and the
 * table when missing. `consistency` is a level name of the driver
 * (one, localOne, quorum, localQuorum, all, …). More nodes may be listed as
 * `contactPoint` parameters (a URL cannot hold a comma-separated host list).
 */
export async function openCassandraStore(uri: string | URL): Promise<CassandraChunkStore> {
  let url: URL;
  try {
    url = typeof uri === "string" ? new URL(uri) : uri;
  } catch (error) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `"${String(uri)}" is not a URI (list more nodes as &contactPoint=host:port)`,
      {
        cause: error,
      },
    );
  }
  const scheme = url.protocol.replace(/:$/, "");
  if (scheme !== "cassandra" && scheme !== "cassandras") {
    throw new R3mapError(
      "ERR_UNKNOWN_SCHEME",
      `not a Cassandra URI: ${scheme}: (use cassandra or cassandras)`,
    );
  }
  const [keyspace, table, ...rest] = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (!keyspace || !table || rest.length > 0) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", "a Cassandra URI names /keyspace/table in its path");
  }
  const size = sizeParam(url, "size", true);
  const chunkSize = sizeParam(url, "chunk") ?? DEFAULT_CHUNK;
  const consistency = consistencyParam(url);
  const replication = replicationParam(url);
  const timeoutMs = integerParam(url, "timeoutMs", DEFAULT_TIMEOUT_MS);
  const host = url.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1";
  const port = url.port === "" ? 9042 : Number(url.port);
  const options: cassandra.ClientOptions = {
    contactPoints: [`${host}:${port}`, ...url.searchParams.getAll("contactPoint")],
    localDataCenter: url.searchParams.get("localDataCenter") ?? "datacenter1",
    socketOptions: { connectTimeout: timeoutMs, readTimeout: timeoutMs },
    // Reconnect quickly after an outage (the default waits up to 10 minutes between attempts).
    policies: {
      reconnection: new cassandra.policies.reconnection.ExponentialReconnectionPolicy(200, 2000, false),
    },
    queryOptions: { prepare: true },
  };
  if (url.username) {
    options.credentials = {
      username: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
    };
  }
  if (scheme === "cassandras") options.sslOptions = tlsOptions(url, host);
  const client = new cassandra.Client(options);
  try {
    await client.connect();
    if (flagParam(url, "create")) {
      await client.execute(
        `CREATE KEYSPACE IF NOT EXISTS ${quoteIdentifier(keyspace)} WITH replication = ${replication} AND durable_writes = true`,
      );
      await client.execute(
        `CREATE TABLE IF NOT EXISTS ${quoteIdentifier(keyspace)}.${quoteIdentifier(table)} (key blob PRIMARY KEY, data blob)`,
      );
    }
  } catch (error) {
    await client.shutdown().catch(() => {});
    throw cassandraError(error, `cannot open ${keyspace}.${table} on ${host}:${port}`, false);
  }
  return new CassandraChunkStore(client, {
    size,
    chunkSize,
    keyspace,
    table,
    prefix: url.searchParams.get("prefix") ?? "",
    ...(consistency === undefined ? {} : { consistency }),
    readOnly: flagParam(url, "readOnly"),
  });
}

/** The Backend over a store: whole chunks validated and, unless `wholeChunks`, any range mapped onto them. */
export function createCassandraBackend(
  store: CassandraChunkStore,
  options: { wholeChunks?: boolean } = {},
): Backend {
  const chunked = new ChunkedStage(store, store.layout.chunkSize);
  return options.wholeChunks ? chunked : new ArbitraryStage(chunked, store.layout.chunkSize);
}

/** `openCassandraStore` + `createCassandraBackend`: what `cassandra:` and `cassandras:` open. */
export async function openCassandraBackend(uri: string | URL): Promise<Backend> {
  return createCassandraBackend(await openCassandraStore(uri));
}

function consistencyParam(url: URL): number | undefined {
  const name = url.searchParams.get("consistency");
  if (name === null) return undefined;
  const levels = cassandra.types.consistencies as unknown as Record<string, number>;
  const match = Object.keys(levels).find(
    (level) => level.toLowerCase() === name.toLowerCase().replace(/_/g, ""),
  );
  if (match === undefined || typeof levels[match] !== "number") {
    const known = Object.keys(levels).filter((k) => typeof levels[k] === "number");
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `unknown consistency "${name}"; use one of ${known.join(", ")}`,
    );
  }
  return levels[match];
}

/** `SimpleStrategy:3` or `NetworkTopologyStrategy:dc1=3,dc2=2` → a CQL replication map. */
function replicationParam(url: URL): string {
  const raw = url.searchParams.get("replication") ?? "SimpleStrategy:1";
  const bad = () =>
    new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `replication "${raw}" is not SimpleStrategy:<factor> or NetworkTopologyStrategy:<dc>=<factor>[,<dc>=<factor>…]`,
    );
  const [strategy, spec = ""] = raw.split(":", 2);
  if (strategy === "SimpleStrategy") {
    if (!/^[1-9]\d*$/.test(spec)) throw bad();
    return `{'class': 'SimpleStrategy', 'replication_factor': ${spec}}`;
  }
  if (strategy === "NetworkTopologyStrategy") {
    const pairs = spec.split(",").map((pair) => /^([A-Za-z0-9_-]+)=([1-9]\d*)$/.exec(pair));
    if (pairs.length === 0 || pairs.some((pair) => pair === null)) throw bad();
    return `{'class': 'NetworkTopologyStrategy', ${pairs.map((pair) => `'${pair![1]}': ${pair![2]}`).join(", ")}}`;
  }
  throw bad();
}

function tlsOptions(url: URL, host: string): NonNullable<cassandra.ClientOptions["sslOptions"]> {
  const ca = fileParam(url, "ca");
  const cert = fileParam(url, "cert");
  const key = fileParam(url, "key");
  const servername = url.searchParams.get("servername") ?? (isIP(host) ? undefined : host);
  return {
    rejectUnauthorized: !flagParam(url, "tlsInsecure"),
    ...(servername ? { servername } : {}),
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
  };
}
