import type { Backend, Progress } from "@r3map/core";

/**
 * What a server needs to act as a migration seeder (the host that has the
 * resource and keeps running on it). The migration package implements it; the
 * server exposes it over the original `Seeder` service and `r3map.v1.MigrationService`.
 */
export interface Seeder {
  /** The resource, as the leecher reads it (not through a page cache). */
  readonly backend: Backend;
  /** Chunk size writes are tracked at; dirty offsets are multiples of it (default 4096). */
  readonly chunkSize?: number;
  /**
   * Starts tracking writes. `session` names the Attach stream the migration
   * belongs to (its end before `close()` means the leecher is gone); none
   * for a leecher of the original protocol.
   */
  track(session?: string): Promise<void> | void;
  /**
   * Chunk-aligned offsets of the chunks written since `track()` or the
   * previous `sync()`; the seeder keeps running and tracking.
   */
  sync(): Promise<number[]> | number[];
  /**
   * The last round: suspend and flush the application, return the offsets
   * written since the previous round and stop tracking. When absent, `sync()`
   * serves as the last round (the original r3map's Sync did all of this).
   */
  finalize?(): Promise<number[]> | number[];
  /** Ends the migration and releases the resource. */
  close(): Promise<void> | void;
  /** The migration's progress, served by WatchProgress. */
  progress?(): Progress;
  /** An NBD server on the seeder's host serving `backend` read-only, for bulk reads (told in Track's reply). */
  readonly dataPlane?: { nbdPort: number; nbdExport: string; tls?: boolean };
  /**
   * A leecher opened MigrationService.Attach: `signal` aborts when that
   * stream ends. Returns the session id the leecher passes to Track; with
   * `resume`, the stream takes an existing session over (after its
   * connection dropped) and its id is returned.
   */
  attach?(signal: AbortSignal, resume?: string): string;
  /** The phase Attach reports: "tracking", "synced" or "closed". */
  phase?(): string;
}
