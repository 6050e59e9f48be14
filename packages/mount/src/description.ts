import { type FilterDescription, R3mapError } from "@r3map/core";

/** Background pull of a managed mount. */
export interface PullDescription {
  /** Concurrent pulls (default 32: a link at tens of milliseconds of RTT needs that many chunks in flight). */
  workers?: number;
  /**
   * Order: `"sequential"` (default), or a recorded access trace (chunk
   * indexes, first accessed first) whose chunks are pulled first.
   */
  order?: "sequential" | { trace: number[] };
  /** Pull everything before `open` resolves (default false: open returns at once, pulling has begun). */
  first?: boolean;
  /** Bytes per pull request: runs of consecutive small chunks are fetched together (default 1 MiB). */
  requestBytes?: number;
  /**
   * The pull finishes only after `MountEngine.finalizePull(changed)` — a
   * migration's leecher, whose remote keeps changing until its last round.
   * Default false: the pull finishes once every chunk is local.
   */
  untilFinalized?: boolean;
}

/** Write-back of a managed mount. */
export interface PushDescription {
  /** Concurrent pushes (default 16). */
  workers?: number;
  /** Milliseconds between background pushes (default 5000); `null`: only on sync and close. */
  intervalMs?: number | null;
}

export interface ManagedDescription {
  /** The local cache, as a backend URI (`memory:`, `file:///…`, `dir:///…`); default: memory of the remote's size. */
  local?: string;
  /** `false` fetches chunks only when they are touched. */
  pull?: PullDescription | false;
  /** `false` keeps writes local (they never reach the remote). */
  push?: PushDescription | false;
  /**
   * A file in which the cache's chunk state persists (which chunks it holds,
   * which are not pushed yet), so that a mount restarted over the same
   * `local` file cache — after a clean close or after the process was
   * killed — reuses every cached chunk, reads none of them from the remote
   * again, and pushes what was still dirty. Needs a `file:` cache. Created
   * when missing; a state left open before the machine rebooted, or one
   * for another cache file, is discarded (the cache is then cold).
   */
  state?: string;
  /**
   * Warm start: the `local` file cache holds a stale copy (left by an earlier
   * run). Before the pull starts, the digest of every chunk not yet present is
   * compared with the remote's — computed by the server on its own copy
   * (`r3map+h2c://` served by r3map) — and every chunk that matches is kept;
   * only the others are pulled. `{ digests: uri }` asks another endpoint for
   * the same resource's digests (a migration's seeder, whose data plane is
   * NBD). Skipped when the cache is not a file or the remote cannot hash
   * (`MountEngine.warmStart` says why). Composes with `state`: chunks it
   * already marks present are left alone.
   */
  warm?: boolean | { digests?: string };
}

/**
 * A mount as plain data, so that its engine can be built on a worker thread
 * (or in another process, or from CLI flags).
 */
export interface MountDescription {
  /** The remote resource as a backend URI: `nbd://host:port/export`, `r3map+h2c://…`, `memory:?size=…`, `file:///…`. */
  remote: string;
  /**
   * Stages stacked on the remote, the first nearest to it, the way nbdkit's
   * `--filter`s stack on a plugin: every fetch, pull and push passes through
   * them (with two connections to a network remote, each gets its own
   * stack). Filters are registered by name (`registerFilter`) by a package
   * named in `schemes`.
   */
  filters?: FilterDescription[];
  /**
   * Packages the engine imports before opening URIs, so their schemes and
   * filters are registered (default: `["@r3map/nbd"]`; add `"@r3map/transport-connect"`,
   * `"@r3map/backend-redis"`, … as needed). Names are resolved from this
   * package, the application's main script, then the working directory; a
   * resolved URL (`import.meta.resolve(name)`) always works.
   */
  schemes?: string[];
  /** Bytes fetched, cached and pushed as a unit (default 1 MiB). A multiple of 4096 for slices. */
  chunkSize?: number;
  /** Managed: a local cache in front of the remote, pulled and pushed in the background. Absent: direct. */
  managed?: ManagedDescription;
}

export const DEFAULT_CHUNK_SIZE = 1024 * 1024;

export function chunkSizeOf(description: MountDescription): number {
  const chunkSize = description.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `chunkSize must be a positive integer, got ${chunkSize}`);
  }
  return chunkSize;
}
