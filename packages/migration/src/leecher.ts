import { type ChunkOrigin, delay, type Progress, R3mapError, TypedEmitter } from "@r3map/core";
import { type DeviceOptions, type Frontend, MountCore, type MountDescription } from "@r3map/mount";
import { UffdRegion } from "@r3map/native";
import { clientOptionsFromUri, SeederClient, type TrackReply } from "@r3map/transport-connect";
import { toLocalChunks } from "./chunks.js";

/**
 * Where a leecher is:
 * - `pre-copy`: locked (reads and faults wait), pulling everything while the seeder's application runs;
 * - `post-copy`: finalized and unlocked — the application may run here; the rest arrives on demand and in the background;
 * - `released`: every chunk is local and the seeder has let go: the resource is this host's.
 */
export type LeecherPhase = "pre-copy" | "post-copy" | "released" | "closed";

export interface LeecherHooks {
  /** The seeder's last round returned these chunks (this mount's chunk indexes), before they are fetched again. */
  afterSync?: (dirty: readonly number[]) => void | Promise<void>;
  /** A chunk became local. */
  onChunkLocal?: (chunk: number, origin: ChunkOrigin) => void;
  /** Once, before `close()` starts. */
  beforeClose?: () => void | Promise<void>;
}

export interface LeecherOptions {
  /** What the resource becomes here. */
  as: Frontend;
  /** The local cache, as a backend URI (default: memory of the resource's size). */
  local?: string;
  /** Chunk size here (default: the seeder's); dirty chunks are translated between the two. */
  chunkSize?: number;
  /** Concurrent pulls (default 32). */
  pullWorkers?: number;
  /** Bearer token for the seeder (or `?token=` in its URI). */
  token?: string;
  /**
   * The seeder's data plane as reachable from here (`nbd://host:port/seed`),
   * when the address the seeder reports is not (a proxy, NAT). Default: the
   * seeder's host with the port it reports.
   */
  data?: string;
  /** Options of the file and path devices (mount point, file name). */
  device?: DeviceOptions;
  /**
   * After the last round, how long a lost seeder is waited for (default
   * 60 000 ms): reads of chunks not yet here wait while the connections are
   * re-established, and the migration resumes; past it they fail with EIO.
   * Give the seeder at least as long (`SeederOptions.recoveryMs`).
   */
  recoveryMs?: number;
  hooks?: LeecherHooks;
}

export interface LeecherEvents {
  phase: [LeecherPhase];
  progress: [Progress];
  "chunk-local": [chunk: number, origin: ChunkOrigin];
  error: [unknown];
}

/** What `finalize()` measured. */
export interface Finalized {
  /** Chunks (this mount's indexes) the seeder changed during pre-copy; marked remote and fetched first. */
  dirty: number[];
  /** Milliseconds from calling finalize to the device being unlocked (the application's downtime here). */
  downtimeMs: number;
  /**
   * The part of the downtime spent waiting for the seeder's last round (the
   * Finalize call: a round trip, its application's suspension and flush);
   * the rest is this side marking the dirty chunks and unlocking.
   */
  lastRoundMs: number;
}

/**
 * The host that takes a resource over from a seeder. `open` starts tracking
 * on the seeder and mounts the resource here at once, locked: reads and
 * faults wait, nothing fails, while every chunk is pulled in the background
 * (pre-copy; the seeder's application keeps running). `finalize` runs the
 * seeder's last round — its application is suspended and flushed — marks
 * the chunks it changed meanwhile remote, queues them first and unlocks: the
 * application may resume here while the rest arrives (post-copy). `release`
 * waits until every chunk is local and lets the seeder go; the mount then
 * belongs to this host, which may seed it again (chains A → B → C).
 *
 * The mount's engine runs on this thread: the application uses the mount
 * from another thread or process.
 */
export class Leecher extends TypedEmitter<LeecherEvents> {
  readonly core: MountCore;
  readonly #client: SeederClient;
  readonly #attached: AbortController;
  #beats: AsyncIterator<unknown>;
  readonly #session: string;
  readonly #recoveryMs: number;
  readonly #hooks: LeecherHooks;
  #phase: LeecherPhase = "pre-copy";
  #finalizing: Promise<Finalized> | undefined;
  #releasing: Promise<MountCore> | undefined;
  #closing: Promise<void> | undefined;
  /** Why the seeder's attachment ended, if it did before the migration did. */
  #detached: unknown;

  private constructor(
    core: MountCore,
    client: SeederClient,
    attachment: { controller: AbortController; beats: AsyncIterator<unknown>; session: string },
    options: LeecherOptions,
  ) {
    super();
    this.core = core;
    this.#client = client;
    this.#attached = attachment.controller;
    this.#beats = attachment.beats;
    this.#session = attachment.session;
    this.#hooks = options.hooks ?? {};
    this.#recoveryMs = options.recoveryMs ?? DEFAULT_RECOVERY_MS;
    core.engine.on("progress", (progress) => this.emit("progress", progress));
    core.engine.on("error", (error) => this.emit("error", error));
    core.engine.on("chunk-local", (chunk, origin) => {
      this.#hooks.onChunkLocal?.(chunk, origin);
      this.emit("chunk-local", chunk, origin);
    });
    this.#stayAttached();
  }

  /** Starts a migration from the seeder at `seederUri` (`r3map+h2c://host:port`, `r3map+https://…`). */
  static async open(seederUri: string, options: LeecherOptions): Promise<Leecher> {
    const clientOptions = clientOptionsFromUri(seederUri);
    const client = await SeederClient.connect({
      ...clientOptions,
      ...(options.token !== undefined ? { token: options.token } : {}),
    });
    let core: MountCore | undefined;
    const controller = new AbortController();
    try {
      // Attached first: the seeder ties the migration to this stream, and ends it if the stream ends.
      const beats = client.migration.attach(controller.signal)[Symbol.asyncIterator]();
      const first = await beats.next();
      if (first.done)
        throw new R3mapError("ERR_REMOTE_UNREACHABLE", "the seeder ended the migration stream at once");
      // Tracking begins before the first chunk is pulled: every write after this reaches the last round.
      const track = await client.migration.track({ session: first.value.session });
      const description: MountDescription = {
        // Each request to the seeder may wait this long, reconnecting, before it fails.
        remote: withTimeout(
          options.data ?? dataUri(seederUri, track),
          options.recoveryMs ?? DEFAULT_RECOVERY_MS,
        ),
        schemes: ["@r3map/nbd", "@r3map/transport-connect"],
        chunkSize: options.chunkSize ?? track.chunkSize,
        managed: {
          ...(options.local ? { local: options.local } : {}),
          pull: { workers: options.pullWorkers ?? 32, untilFinalized: true },
          // The seeder's copy is left behind: nothing written here goes back.
          push: false,
        },
      };
      core = await MountCore.open(options.as, description, options.device ?? {});
      // Nothing is read here until the data is final.
      await core.setAccess("locked");
      return new Leecher(core, client, { controller, beats, session: first.value.session }, options);
    } catch (error) {
      await core?.close().catch(() => {});
      // Ending the attachment tells the seeder to stop tracking.
      controller.abort();
      await client.release();
      throw error;
    }
  }

  get phase(): LeecherPhase {
    return this.#phase;
  }

  get size(): number {
    return this.core.handle.size;
  }

  /** The file (file mounts) or block device (path mounts). */
  get path(): string | undefined {
    return this.core.handle.path;
  }

  /** A slice's memory (touch it from another thread: this one serves its faults). */
  get buffer(): Buffer {
    const { regionId, size } = this.core.handle;
    if (regionId === undefined)
      throw new R3mapError("ERR_NOT_SUPPORTED", "only a slice has a buffer; use path");
    return UffdRegion.attach(regionId).subarray(0, size);
  }

  progress(): Progress | undefined {
    return this.core.progress();
  }

  /**
   * The seeder's last round: its application is suspended and flushed, and
   * the chunks it wrote during pre-copy come back; those are marked remote
   * and pulled first, and the device unlocks. Rejects — leaving the seeder
   * running and this mount locked, to be closed — if the seeder cannot be
   * reached.
   */
  finalize(): Promise<Finalized> {
    this.#finalizing ??= (async () => {
      this.#assertAttached();
      const started = performance.now();
      const reply = await this.#client.migration.finalize();
      const lastRoundMs = performance.now() - started;
      const dirty = toLocalChunks(reply.chunks, reply.chunkSize, this.core.engine.chunkSize, this.size);
      await this.#hooks.afterSync?.(dirty);
      this.core.engine.finalizePull(dirty);
      await this.core.unlock(dirty);
      const downtimeMs = performance.now() - started;
      this.#setPhase("post-copy");
      return { dirty, downtimeMs, lastRoundMs };
    })();
    return this.#finalizing;
  }

  /**
   * Resolves once every chunk is local; then tells the seeder it may let go
   * (Close) and leaves it. The mount — `core` — is this host's now: close it
   * when done, or seed it again.
   */
  release(): Promise<MountCore> {
    this.#releasing ??= (async () => {
      if (!this.#finalizing) throw new R3mapError("ERR_INVALID_ARGUMENT", "release() needs finalize() first");
      await this.#finalizing;
      await this.core.engine.pulled();
      await this.#client.migration.close();
      this.#attached.abort();
      await this.#client.release();
      this.#setPhase("released");
      return this.core;
    })();
    return this.#releasing;
  }

  /**
   * Closes the mount and leaves the seeder. Before `finalize()` the seeder
   * just stops tracking and its application never noticed; after it,
   * without `release()`, the seeder is told the migration ended (Close). Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        await this.#hooks.beforeClose?.();
      } finally {
        try {
          await this.core.close();
        } finally {
          if (this.#phase !== "released") {
            // After the last round, Close lets the seeder go; before it, Close is a no-op there.
            await this.#client.migration.close().catch(() => {});
            this.#attached.abort();
            await this.#client.release();
          }
          this.#setPhase("closed");
        }
      }
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * Holds the seeder's Attach stream open until release or close. Its end
   * before then, in pre-copy, ends the migration; after the last round the
   * session is resumed on a new stream for up to `recoveryMs` (the seeder
   * keeps it that long), and only then is the seeder given up.
   */
  #stayAttached(): void {
    (async () => {
      for (;;) {
        let reason: unknown;
        try {
          // Heartbeats: the seeder is there.
          while (!(await this.#beats.next()).done) {}
          reason = new R3mapError("ERR_REMOTE_UNREACHABLE", "the seeder ended the migration stream");
        } catch (error) {
          reason = error;
        }
        if (this.#attached.signal.aborted) return;
        if (this.#phase !== "post-copy" || !(await this.#reattach())) return this.#detach(reason);
      }
    })().catch((error: unknown) => this.#detach(error));
  }

  /** Resumes the session on a new stream, retrying until `recoveryMs` has passed; true once attached again. */
  async #reattach(): Promise<boolean> {
    const deadline = performance.now() + this.#recoveryMs;
    while (!this.#attached.signal.aborted && performance.now() < deadline) {
      const beats = this.#client.migration
        .attach(this.#attached.signal, { resume: this.#session })
        [Symbol.asyncIterator]();
      try {
        if (!(await beats.next()).done) {
          this.#beats = beats;
          return true;
        }
      } catch {
        // not back yet
      }
      await delay(Math.min(RECONNECT_INTERVAL_MS, Math.max(0, deadline - performance.now()))).catch(() => {});
    }
    return false;
  }

  #detach(reason: unknown): void {
    if (this.#attached.signal.aborted) return;
    this.#detached = reason;
    this.emit("error", reason);
  }

  #assertAttached(): void {
    if (this.#detached !== undefined) {
      throw new R3mapError("ERR_REMOTE_UNREACHABLE", "the seeder went away before the last round", {
        cause: this.#detached,
      });
    }
  }

  #setPhase(phase: LeecherPhase): void {
    this.#phase = phase;
    this.emit("phase", phase);
  }
}

const DEFAULT_RECOVERY_MS = 60_000;
/** Between attempts to resume a dropped session. */
const RECONNECT_INTERVAL_MS = 250;

/**
 * `uri` with a request deadline, when it has none (an NBD URI's `timeout`,
 * Connect's `timeoutMs`); over NBD a request reconnects as often as the
 * deadline allows, so a dropped connection is waited out, not given up.
 */
function withTimeout(uri: string, ms: number): string {
  const url = new URL(uri);
  const nbd = url.protocol.startsWith("nbd");
  const name = nbd ? "timeout" : "timeoutMs";
  if (!url.searchParams.has(name)) url.searchParams.set(name, String(ms));
  if (nbd && !url.searchParams.has("retries")) url.searchParams.set("retries", "until-timeout");
  return url.href;
}

/**
 * The URI the mount reads the seeder's bytes from: its NBD data plane on the
 * seeder's host when it has one (TLS files carried over), else the control
 * plane itself (the seeder serves its resource there too).
 */
function dataUri(seederUri: string, track: TrackReply): string {
  const control = new URL(seederUri);
  const plane = track.dataPlane;
  if (!plane) return seederUri;
  const data = new URL(`${plane.tls ? "nbds" : "nbd"}://${control.host}`);
  data.port = String(plane.nbdPort);
  data.pathname = `/${encodeURIComponent(plane.nbdExport)}`;
  for (const name of ["ca", "cert", "key"]) {
    const value = control.searchParams.get(name);
    if (value !== null) data.searchParams.set(name, value);
  }
  return data.href;
}
