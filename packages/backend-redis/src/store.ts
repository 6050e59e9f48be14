import { KeyedChunkStore, R3mapError } from "@r3map/core";
import type { Cluster, Redis } from "ioredis";
import { redisError } from "./errors.js";

export interface RedisChunkStoreOptions {
  /** Resource size in bytes (Redis does not record it). */
  size: number;
  /** Bytes per chunk, i.e. per key. */
  chunkSize: number;
  /** Prepended to every key: chunk `i` is stored under `<prefix><i × chunkSize>`. Default "". */
  prefix?: string;
  readOnly?: boolean;
  /**
   * `sync()` runs `WAIT replicas timeout` on every master, so acknowledged
   * writes have reached that many replicas. Default 0: nothing to flush (Redis
   * acknowledges a SET once it is in memory; persistence is the server's
   * appendfsync setting).
   */
  waitReplicas?: number;
  waitTimeoutMs?: number;
}

/**
 * Chunks in Redis, one key per chunk named `<prefix><byte offset>` (decimal, as
 * the original r3map names them, plus an optional prefix), values the raw
 * chunk bytes, no TTL.
 *
 * It is both a ChunkStore (`get`/`put`/`delete` of blobs by chunk index, which
 * `TransformStore` from @r3map/core can wrap) and a whole-chunk Backend; use
 * `createRedisBackend` for any offset and length. A missing key reads as zeros.
 *
 * Pipelining: the client runs with ioredis' auto-pipelining, so the per-chunk
 * GETs and SETs one request fans out into (ArbitraryStage issues them in the
 * same tick) leave in one pipeline per connection. On a Redis Cluster the keys
 * spread over all slots (no hash tags), and ioredis groups each tick's commands
 * into one pipeline per master.
 */
export class RedisChunkStore extends KeyedChunkStore {
  readonly prefix: string;
  readonly #client: Redis | Cluster;
  readonly #ownsClient: boolean;
  readonly #waitReplicas: number;
  readonly #waitTimeoutMs: number;

  /** Wraps a connected client; `ownsClient` (default true) means `close` disconnects it. */
  constructor(client: Redis | Cluster, options: RedisChunkStoreOptions, ownsClient = true) {
    super(options.size, options.chunkSize, options.readOnly);
    this.prefix = options.prefix ?? "";
    this.#client = client;
    this.#ownsClient = ownsClient;
    this.#waitReplicas = options.waitReplicas ?? 0;
    this.#waitTimeoutMs = options.waitTimeoutMs ?? 5000;
  }

  get client(): Redis | Cluster {
    return this.#client;
  }

  /** The key chunk `chunk` is stored under. */
  keyOf(chunk: number): string {
    return `${this.prefix}${this.layout.offsetOf(chunk)}`;
  }

  async get(chunk: number): Promise<Uint8Array | undefined> {
    this.assertOpen();
    const key = this.keyOf(chunk);
    try {
      return (await this.#client.getBuffer(key)) ?? undefined;
    } catch (error) {
      throw redisError(error, `GET ${key}`, this.closed);
    }
  }

  async put(chunk: number, data: Uint8Array): Promise<void> {
    this.assertOpen();
    this.assertWritable();
    const key = this.keyOf(chunk);
    try {
      // A private copy (and a Buffer: ioredis would stringify a plain Uint8Array). A command
      // that timed out while the connection was down stays queued and is sent on reconnect;
      // it must carry the bytes of this call, not whatever the caller put in its buffer since.
      await this.#client.set(key, Buffer.from(data));
    } catch (error) {
      throw redisError(error, `SET ${key}`, this.closed);
    }
  }

  override readonly delete = async (chunk: number): Promise<void> => {
    this.assertOpen();
    this.assertWritable();
    const key = this.keyOf(chunk);
    try {
      await this.#client.unlink(key);
    } catch (error) {
      throw redisError(error, `UNLINK ${key}`, this.closed);
    }
  };

  protected async flush(): Promise<void> {
    if (this.#waitReplicas <= 0) return;
    const masters = "nodes" in this.#client ? this.#client.nodes("master") : [this.#client];
    try {
      await Promise.all(
        masters.map(async (node) => {
          const acked = await node.wait(this.#waitReplicas, this.#waitTimeoutMs);
          if (acked < this.#waitReplicas) {
            throw new R3mapError(
              "ERR_TIMEOUT",
              `only ${acked} of ${this.#waitReplicas} replicas acknowledged the writes within ${this.#waitTimeoutMs} ms`,
            );
          }
        }),
      );
    } catch (error) {
      throw redisError(error, "WAIT", false);
    }
  }

  protected async release(): Promise<void> {
    if (!this.#ownsClient) return;
    // QUIT lets queued replies arrive; if the server is gone it fails within the command timeout.
    await this.#client.quit().catch(() => undefined);
    this.#client.disconnect();
  }
}
