import type { Caller, PerCallOptions } from "./caller.js";
import { type ConnectClientOptions, openCaller, type RemoteInfo, readAtInPieces } from "./client.js";
import { Seeder as SeederServiceDesc } from "./gen/migration/v1/seeder_pb.js";
import { MigrationService } from "./gen/r3map/v1/r3map_pb.js";

/** What MigrationService.Track answers. */
export interface TrackReply {
  chunkSize: number;
  size: number;
  /** The seeder's NBD data plane, when it has one: this port and export on its host. */
  dataPlane?: { nbdPort: number; nbdExport: string; tls: boolean };
}

/** A round of dirty chunks from MigrationService. */
export interface DirtyChunks {
  chunkSize: number;
  /** Chunk indexes, ascending. */
  chunks: number[];
}

/**
 * The leecher's side of a migration: the original `Seeder` service
 * (ReadAt/Track/Sync/Close, as the Go leecher calls it) and r3map's
 * `MigrationService` (rounds of dirty chunk indexes, Finalize). Works with an
 * original Go seeder when `size` is passed (then only the original calls).
 *
 * Retries: ReadAt only. Track, Sync, Finalize and Close change the seeder's
 * state (Sync hands over and forgets the dirty list), so they are sent once.
 */
export class SeederClient {
  readonly size: number;
  readonly info: RemoteInfo;
  readonly #caller: Caller;
  #released: Promise<void> | undefined;

  private constructor(caller: Caller, info: RemoteInfo) {
    this.#caller = caller;
    this.info = info;
    this.size = info.size;
  }

  static async connect(options: ConnectClientOptions): Promise<SeederClient> {
    const { caller, info } = await openCaller(options);
    return new SeederClient(caller, info);
  }

  /** Fills `buffer` from `offset` with the seeder's bytes (Seeder.ReadAt, split under the cap). */
  async readAt(buffer: Uint8Array, offset: number, options: PerCallOptions = {}): Promise<void> {
    await readAtInPieces(
      this.#caller,
      this.info,
      SeederServiceDesc,
      "Seeder.ReadAt",
      buffer,
      offset,
      options,
    );
  }

  /** Seeder.Track: the seeder starts tracking writes. */
  async track(options: PerCallOptions = {}): Promise<void> {
    await this.#caller.call(
      SeederServiceDesc,
      "Seeder.Track",
      "never",
      (c, call) => c.track({}, call),
      options,
    );
  }

  /** Seeder.Sync (the original's last round): chunk-aligned offsets of the chunks written since Track. */
  async sync(options: PerCallOptions = {}): Promise<number[]> {
    const reply = await this.#caller.call(
      SeederServiceDesc,
      "Seeder.Sync",
      "never",
      (c, call) => c.sync({}, call),
      options,
    );
    return reply.DirtyOffsets.map(Number);
  }

  /** Seeder.Close: ends the migration on the seeder. The connections stay open until `release()`. */
  async close(options: PerCallOptions = {}): Promise<void> {
    await this.#caller.call(
      SeederServiceDesc,
      "Seeder.Close",
      "never",
      (c, call) => c.close({}, call),
      options,
    );
  }

  /** r3map's migration control (needs an r3map seeder). */
  readonly migration = {
    /**
     * Starts tracking; returns the seeder's chunk size, the resource size and,
     * when the seeder offers one, its NBD data plane (port and export on the
     * seeder's host).
     */
    track: async (options: PerCallOptions & { session?: string } = {}): Promise<TrackReply> => {
      const { session = "", ...perCall } = options;
      const reply = await this.#caller.call(
        MigrationService,
        "Migration.Track",
        "never",
        (c, call) => c.track({ session }, call),
        perCall,
      );
      return {
        chunkSize: reply.chunkSize,
        size: Number(reply.size),
        ...(reply.nbdPort > 0
          ? { dataPlane: { nbdPort: reply.nbdPort, nbdExport: reply.nbdExport, tls: reply.nbdTls } }
          : {}),
      };
    },
    /**
     * Stays attached until `signal` aborts: the seeder hears of the end of
     * this stream, and a stream that ends before Close tells it the leecher is
     * gone. Open it before Track and pass the session of its first heartbeat
     * to `track`; after a dropped connection, `resume` that session. Yields
     * every heartbeat; ends (or throws) when the connection does.
     */
    attach: (
      signal: AbortSignal,
      { intervalMs = 1000, resume = "" }: { intervalMs?: number; resume?: string } = {},
    ): AsyncIterable<{ phase: string; session: string }> => {
      const caller = this.#caller;
      return {
        async *[Symbol.asyncIterator]() {
          const stream = caller.stream(
            MigrationService,
            "Migration.Attach",
            (c, call) => c.attach({ intervalMs, session: resume }, call),
            { signal },
            { deadline: false },
          );
          for await (const beat of stream) yield { phase: beat.phase, session: beat.session };
        },
      };
    },
    /** Chunks written since Track or the previous round; the seeder keeps running. */
    sync: async (options: PerCallOptions = {}): Promise<DirtyChunks> => {
      const reply = await this.#caller.call(
        MigrationService,
        "Migration.Sync",
        "never",
        (c, call) => c.sync({}, call),
        options,
      );
      return { chunkSize: reply.chunkSize, chunks: reply.dirtyChunks.map(Number) };
    },
    /** The last round: the seeder suspends and flushes its app and stops tracking. */
    finalize: async (options: PerCallOptions = {}): Promise<DirtyChunks> => {
      const reply = await this.#caller.call(
        MigrationService,
        "Migration.Finalize",
        "never",
        (c, call) => c.finalize({}, call),
        options,
      );
      return { chunkSize: reply.chunkSize, chunks: reply.dirtyChunks.map(Number) };
    },
    close: async (options: PerCallOptions = {}): Promise<void> => {
      await this.#caller.call(
        MigrationService,
        "Migration.Close",
        "never",
        (c, call) => c.close({}, call),
        options,
      );
    },
  };

  /** Closes the connections (not the seeder: call `close()` for that first). Idempotent. */
  release(): Promise<void> {
    this.#released ??= this.#caller.close();
    return this.#released;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}
