import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import {
  ArbitraryStage,
  type Backend,
  ChunkedStage,
  flagParam,
  integerParam,
  R3mapError,
  sizeParam,
} from "@r3map/core";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { S3ChunkStore } from "./store.js";

const DEFAULT_CHUNK = 1024 * 1024;
const DEFAULT_CONCURRENCY = 32;
const DEFAULT_TIMEOUT_MS = 10_000;

export interface S3ClientOptions {
  endpoint?: string | undefined;
  region?: string | undefined;
  /** `bucket` in the path instead of the host name; default: true with a custom endpoint, false for AWS. */
  pathStyle?: boolean | undefined;
  /** Explicit credentials; without them the SDK's chain applies (env, ~/.aws files, SSO, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | undefined;
  /** Keep-alive sockets per protocol (default 32). */
  maxSockets?: number | undefined;
  /** Connect and per-request deadline in ms (default 10000). */
  timeoutMs?: number | undefined;
  /** SDK attempts per request, including the first (default 3). */
  maxAttempts?: number | undefined;
}

/** An S3Client with keep-alive agents and deadlines, as the URI opener builds it. */
export function createS3Client(options: S3ClientOptions = {}): S3Client {
  const maxSockets = options.maxSockets ?? DEFAULT_CONCURRENCY;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const config: S3ClientConfig = {
    requestHandler: new NodeHttpHandler({
      httpAgent: new HttpAgent({ keepAlive: true, maxSockets }),
      httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets }),
      connectionTimeout: timeoutMs,
      requestTimeout: timeoutMs,
    }),
    forcePathStyle: options.pathStyle ?? options.endpoint !== undefined,
    maxAttempts: options.maxAttempts ?? 3,
    // Checksums only where S3 requires them: servers other than AWS (Ceph, older
    // MinIO) reject the SDK's default trailing CRC32 on every PUT.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  };
  const region = options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  if (region) config.region = region;
  else if (options.endpoint) config.region = "us-east-1"; // S3-compatible servers ignore it, but SigV4 needs one
  if (options.endpoint) config.endpoint = options.endpoint;
  if (options.credentials) config.credentials = options.credentials;
  return new S3Client(config);
}

/**
 * Opens an S3ChunkStore from a URI:
 *
 * ```
 * s3://[ACCESS_KEY:SECRET_KEY@]bucket[/prefix]?size=1GiB[&chunk=1MiB]
 *      [&endpoint=http://127.0.0.1:9000][&region=us-east-1][&pathStyle=1|0][&create=1]
 *      [&concurrency=32][&timeoutMs=10000][&maxAttempts=3][&readOnly=1][&sessionToken=…]
 * ```
 *
 * Without credentials in the URI, the AWS SDK's chain finds them
 * (AWS_ACCESS_KEY_ID/…, ~/.aws/credentials and config with AWS_PROFILE, SSO,
 * instance roles). `create=1` creates the bucket when it does not exist.
 */
export async function openS3Store(uri: string | URL): Promise<S3ChunkStore> {
  let url: URL;
  try {
    url = typeof uri === "string" ? new URL(uri) : uri;
  } catch (error) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `"${String(uri)}" is not a URI`, { cause: error });
  }
  if (url.protocol !== "s3:") throw new R3mapError("ERR_UNKNOWN_SCHEME", `not an s3: URI: ${url.protocol}`);
  const bucket = decodeURIComponent(url.hostname);
  if (!bucket)
    throw new R3mapError("ERR_INVALID_ARGUMENT", "the s3: URI names no bucket (s3://bucket/prefix?size=…)");
  const endpoint = url.searchParams.get("endpoint") ?? undefined;
  const region = url.searchParams.get("region") ?? undefined;
  const pathStyle = url.searchParams.has("pathStyle") ? flagParam(url, "pathStyle") : undefined;
  const concurrency = integerParam(url, "concurrency", DEFAULT_CONCURRENCY);
  const sessionToken = url.searchParams.get("sessionToken");
  const credentials = url.username
    ? {
        accessKeyId: decodeURIComponent(url.username),
        secretAccessKey: decodeURIComponent(url.password),
        ...(sessionToken ? { sessionToken } : {}),
      }
    : undefined;
  const client = createS3Client({
    endpoint,
    region,
    pathStyle,
    credentials,
    maxSockets: concurrency,
    timeoutMs: integerParam(url, "timeoutMs", DEFAULT_TIMEOUT_MS),
    maxAttempts: integerParam(url, "maxAttempts", 3),
  });
  const store = new S3ChunkStore(client, {
    size: sizeParam(url, "size", true),
    chunkSize: sizeParam(url, "chunk") ?? DEFAULT_CHUNK,
    bucket,
    prefix: decodeURIComponent(url.pathname.replace(/^\/+/, "")),
    readOnly: flagParam(url, "readOnly"),
    concurrency,
  });
  if (flagParam(url, "create")) {
    try {
      await store.ensureBucket(region);
    } catch (error) {
      await store.close();
      throw error;
    }
  }
  return store;
}

/** The Backend over a store: whole chunks validated and, unless `wholeChunks`, any range mapped onto them. */
export function createS3Backend(store: S3ChunkStore, options: { wholeChunks?: boolean } = {}): Backend {
  const chunked = new ChunkedStage(store, store.layout.chunkSize);
  return options.wholeChunks ? chunked : new ArbitraryStage(chunked, store.layout.chunkSize);
}

/** `openS3Store` + `createS3Backend`: what the `s3:` scheme opens. */
export async function openS3Backend(uri: string | URL): Promise<Backend> {
  return createS3Backend(await openS3Store(uri));
}
