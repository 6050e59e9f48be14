import { KeyedChunkStore, R3mapError } from "@r3map/core";
import type cassandra from "cassandra-driver";
import { cassandraError } from "./errors.js";

export interface CassandraChunkStoreOptions {
  /** Resource size in bytes (the table does not record it). */
  size: number;
  /** Bytes per chunk, i.e. per row. */
  chunkSize: number;
  keyspace: string;
  table: string;
  /** Row key prefix: chunk `i` is `<prefix>-<i × chunkSize>`, or `<i × chunkSize>` when empty. */
  prefix?: string;
  /** Consistency level of reads and writes (cassandra.types.consistencies; default localQuorum). */
  consistency?: number;
  readOnly?: boolean;
}

/** CQL identifiers are quoted, so any keyspace or table name from a URI is safe. */
export function quoteIdentifier(name: string): string {
  if (name === "" || name.length > 48) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `"${name}" is not a valid keyspace or table name (1 to 48 characters)`,
    );
  }
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * Chunks as rows of a Cassandra table `(key blob PRIMARY KEY, data blob)`, the
 * schema of the original r3map's benchmark, with the key the UTF-8 bytes of
 * `<prefix>-<byte offset>`. Reads are `SELECT data … WHERE key = ? LIMIT 1`,
 * writes `INSERT` (an upsert), both prepared, at the configured consistency. A
 * missing row reads as zeros.
 *
 * Both a ChunkStore (`get`/`put`/`delete`, for core's `TransformStore`) and a
 * whole-chunk Backend; `createCassandraBackend` takes any offset and length.
 */
export class CassandraChunkStore extends KeyedChunkStore {
  readonly prefix: string;
  readonly #client: cassandra.Client;
  readonly #ownsClient: boolean;
  readonly #options: { prepare: true; consistency?: number };
  readonly #select: string;
  readonly #insert: string;
  readonly #remove: string;

  constructor(client: cassandra.Client, options: CassandraChunkStoreOptions, ownsClient = true) {
    super(options.size, options.chunkSize, options.readOnly);
    this.prefix = options.prefix ?? "";
    this.#client = client;
    this.#ownsClient = ownsClient;
    this.#options = {
      prepare: true,
      ...(options.consistency === undefined ? {} : { consistency: options.consistency }),
    };
    const table = `${quoteIdentifier(options.keyspace)}.${quoteIdentifier(options.table)}`;
    this.#select = `SELECT data FROM ${table} WHERE key = ? LIMIT 1`;
    this.#insert = `INSERT INTO ${table} (key, data) VALUES (?, ?)`;
    this.#remove = `DELETE FROM ${table} WHERE key = ?`;
  }

  get client(): cassandra.Client {
    return this.#client;
  }

  keyOf(chunk: number): string {
    const offset = this.layout.offsetOf(chunk);
    return this.prefix === "" ? String(offset) : `${this.prefix}-${offset}`;
  }

  async get(chunk: number): Promise<Uint8Array | undefined> {
    this.assertOpen();
    const key = this.keyOf(chunk);
    try {
      const result = await this.#client.execute(this.#select, [Buffer.from(key)], this.#options);
      const data = result.first()?.get("data") as Buffer | null | undefined;
      return data ?? undefined;
    } catch (error) {
      throw cassandraError(error, `SELECT ${key}`, this.closed);
    }
  }

  async put(chunk: number, data: Uint8Array): Promise<void> {
    this.assertOpen();
    this.assertWritable();
    const key = this.keyOf(chunk);
    try {
      // A private copy: the driver may retry or speculatively re-send after the caller reused its buffer.
      await this.#client.execute(this.#insert, [Buffer.from(key), Buffer.from(data)], this.#options);
    } catch (error) {
      throw cassandraError(error, `INSERT ${key}`, this.closed);
    }
  }

  override readonly delete = async (chunk: number): Promise<void> => {
    this.assertOpen();
    this.assertWritable();
    const key = this.keyOf(chunk);
    try {
      await this.#client.execute(this.#remove, [Buffer.from(key)], this.#options);
    } catch (error) {
      throw cassandraError(error, `DELETE ${key}`, this.closed);
    }
  };

  /** Writes are acknowledged at the consistency level (commit log per the server's commitlog_sync): nothing to flush. */
  protected flush(): void {}

  protected async release(): Promise<void> {
    if (this.#ownsClient) await this.#client.shutdown();
  }
}
