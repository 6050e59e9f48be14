import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { type Backend, deferred, type Progress, R3mapError, TypedEmitter } from "@r3map/core";
import { MountCore } from "@r3map/mount";
import { NbdServer } from "@r3map/nbd";
import { ConnectServer, type Seeder as SeederService, type ServerTlsOptions } from "@r3map/transport-connect";
import { backendResource, mountResource, type SeededResource } from "./resource.js";

/**
 * Where a seeder is in its migration:
 * - `idle`: serving reads, no leecher attached;
 * - `tracking`: a leecher sent Track; every chunk written from then on is recorded (pre-copy);
 * - `synced`: the last round ran (the application was suspended and flushed);
 *   writes are refused until Close or until the seeder resumes;
 * - `migrated`: Close after the last round — the leecher owns the resource now.
 */
export type SeederPhase = "idle" | "tracking" | "synced" | "migrated";

export interface SeederHooks {
  /**
   * The last round begins (Finalize, or the original protocol's Sync):
   * suspend the application and flush its buffers. What it writes after
   * this returns is not migrated — and is refused where the device can.
   */
  beforeSync?: () => void | Promise<void>;
  /** Once, when the leecher has taken over (Close after the last round). */
  beforeClose?: () => void | Promise<void>;
  /**
   * The seeder lets its application write again after a last round that no
   * leecher completed (the leecher's connection ended before Close): resume
   * the application.
   */
  afterResume?: () => void | Promise<void>;
}

export interface SeederOptions {
  /** Address of the control plane (Connect/gRPC: the original Seeder service and r3map.v1; default 127.0.0.1). */
  host?: string;
  /** Port of the control plane (default 0: a free one, see `url`). */
  port?: number;
  /**
   * The data plane: an NBD server on the same host serving the resource
   * read-only, which leechers read chunks from (faster than gRPC here).
   * `false`: none (leechers read over the control plane). Default: a free port.
   */
  data?: { port?: number } | false;
  /** Bearer tokens the control plane accepts; without any, calls are not authenticated. */
  tokens?: string[];
  /** TLS for both planes (the data plane as NBD STARTTLS). */
  tls?: ServerTlsOptions;
  /** Writes are tracked per chunk of this size (a plain backend; a mount tracks at its own chunk size). Default 64 KiB. */
  chunkSize?: number;
  /**
   * After the last round the leecher's application may already run on what
   * it received, so a dropped connection is not a dead leecher: the seeder
   * keeps the migration this long (default 60 000 ms) for the leecher to
   * attach again, and only then gives it up and lets its application write.
   */
  recoveryMs?: number;
  hooks?: SeederHooks;
}

export interface SeederEvents {
  phase: [SeederPhase];
  /** A leecher's attachment ended before Close: the seeder stopped tracking (and let writes in again). */
  "leecher-gone": [];
  error: [unknown];
}

const DEFAULT_CHUNK_SIZE = 64 * 1024;

/**
 * The host that has a resource and keeps running on it while a leecher takes
 * it over. It serves the resource's current bytes (over NBD for bulk reads,
 * and over the original r3map Seeder service, wire-compatible), records every
 * chunk written from the leecher's Track on — through the engine, natively
 * through FUSE or the loop device, or into a slice's memory — and on the last
 * round runs `beforeSync`, flushes, hands over the dirty chunks and refuses
 * further writes. Close after that round ends the migration (`migrated`);
 * Close before it changes nothing, as in the original.
 *
 * A mount seeded here must run its engine on this thread (`MountCore`, or a
 * `Mount` opened with `engine: "this-thread"`): its application uses it from
 * another thread or process.
 */
export class Seeder extends TypedEmitter<SeederEvents> {
  readonly resource: SeededResource;
  #phase: SeederPhase = "idle";
  /** Open Attach streams by session id; the one named by Track owns the migration. */
  readonly #attachments = new Map<string, AbortSignal>();
  #owner: string | undefined;
  /** Running while the owner's stream is gone after the last round: its end gives the migration up. */
  #recovery: NodeJS.Timeout | undefined;
  readonly #recoveryMs: number;
  #closing: Promise<void> | undefined;
  readonly #migrated = deferred<void>();
  readonly #hooks: SeederHooks;

  private constructor(
    resource: SeededResource,
    options: SeederOptions,
    readonly control: ConnectServer,
    readonly data: { server: NbdServer; port: number } | undefined,
  ) {
    super();
    this.resource = resource;
    this.#hooks = options.hooks ?? {};
    this.#recoveryMs = options.recoveryMs ?? 60_000;
  }

  /**
   * Starts seeding `resource`: a mount whose engine runs on this thread, or a
   * plain backend (the application then writes through `seeder.resource.backend`).
   */
  static async start(resource: MountCore | Backend, options: SeederOptions = {}): Promise<Seeder> {
    const seeded =
      resource instanceof MountCore
        ? mountResource(resource)
        : backendResource(resource, options.chunkSize ?? DEFAULT_CHUNK_SIZE);
    const host = options.host ?? "127.0.0.1";
    let data: { server: NbdServer; port: number } | undefined;
    if (options.data !== false) {
      const server = new NbdServer({
        exports: [
          { name: DATA_EXPORT, backend: seeded.backend, readOnly: true, description: "r3map seeder" },
        ],
        ...(options.tls ? dataPlaneTls(options.tls) : {}),
      });
      const address = (await server.listen({ host, port: options.data?.port ?? 0 })) as AddressInfo;
      data = { server, port: address.port };
    }
    let seeder: Seeder | undefined;
    const service: SeederService = {
      backend: seeded.backend,
      chunkSize: seeded.chunkSize,
      track: (session) => seeder!.#track(session),
      sync: () => seeder!.#round(),
      finalize: () => seeder!.#lastRound(),
      close: () => seeder!.#leecherClosed(),
      attach: (signal, resume) => seeder!.#attach(signal, resume),
      phase: () => seeder!.#phase,
      progress: () => seeder!.#progress(),
      ...(data
        ? { dataPlane: { nbdPort: data.port, nbdExport: DATA_EXPORT, tls: options.tls !== undefined } }
        : {}),
    };
    try {
      const control = await ConnectServer.listen({
        seeder: service,
        host,
        port: options.port ?? 0,
        ...(options.tls ? { tls: options.tls } : {}),
        ...(options.tokens && options.tokens.length > 0 ? { tokens: options.tokens } : {}),
      });
      seeder = new Seeder(seeded, options, control, data);
      return seeder;
    } catch (error) {
      await data?.server.close();
      throw error;
    }
  }

  /** The control plane's URI, for a leecher: `r3map+h2c://host:port` (or `r3map+https://`). */
  get url(): string {
    return this.control.url;
  }

  get phase(): SeederPhase {
    return this.#phase;
  }

  /** Resolves once a leecher has taken the resource over (Close after the last round). */
  get migrated(): Promise<void> {
    return this.#migrated.promise;
  }

  /**
   * Gives up the migration under way: tracking stops and, after a last round,
   * writes are allowed again (`afterResume` runs). A new leecher may start.
   */
  async resume(): Promise<void> {
    if (this.#phase === "migrated") throw new R3mapError("ERR_CLOSED", "the resource was migrated away");
    const wasSynced = this.#phase === "synced";
    if (this.#phase === "tracking") this.resource.stopTracking();
    this.#owner = undefined;
    clearTimeout(this.#recovery);
    this.#recovery = undefined;
    this.#setPhase("idle");
    if (wasSynced) {
      await this.resource.setWritable(true);
      await this.#hooks.afterResume?.();
    }
  }

  /** Stops both servers (not the resource: the caller closes the mount). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearTimeout(this.#recovery);
      await Promise.allSettled([this.control.close(), this.data?.server.close()]);
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #track(session: string | undefined): void {
    if (this.#phase === "migrated") throw new R3mapError("ERR_CLOSED", "the resource was migrated away");
    if (this.#phase !== "idle") {
      throw new R3mapError(
        "ERR_BUSY",
        `a migration is already under way (${this.#phase}); a new leecher may start once it ends`,
      );
    }
    if (session !== undefined && !this.#attachments.has(session)) {
      throw new R3mapError("ERR_INVALID_ARGUMENT", `no attachment "${session}": open Attach before Track`);
    }
    this.#owner = session;
    this.resource.trackWrites();
    this.#setPhase("tracking");
  }

  /** A pre-copy round: the chunks written since Track or the previous round, as byte offsets. */
  #round(): number[] {
    if (this.#phase !== "tracking") throw this.#notTracking("Sync");
    return this.#offsets(this.resource.takeTrackedWrites());
  }

  async #lastRound(): Promise<number[]> {
    if (this.#phase !== "tracking") throw this.#notTracking("Finalize");
    const owner = this.#owner;
    await this.#hooks.beforeSync?.();
    await this.resource.flush();
    // No write lands after this; then the last ones are taken.
    await this.resource.setWritable(false);
    if (this.#phase !== "tracking" || this.#owner !== owner) {
      // The leecher went away while the application was being suspended (its migration was given
      // up meanwhile): this round is void, and the application may go on here.
      await this.resource.setWritable(true);
      await this.#hooks.afterResume?.();
      throw new R3mapError(
        "ERR_ABORTED",
        "the leecher went away during the last round; nothing was handed over",
      );
    }
    const dirty = this.resource.stopTracking();
    this.#setPhase("synced");
    return this.#offsets(dirty);
  }

  async #leecherClosed(): Promise<void> {
    // Close before the last round is a no-op, as in the original.
    if (this.#phase !== "synced") return;
    this.#setPhase("migrated");
    try {
      await this.#hooks.beforeClose?.();
    } finally {
      this.#migrated.resolve();
    }
  }

  #attach(signal: AbortSignal, resume?: string): string {
    let session: string = randomUUID();
    if (resume !== undefined) {
      if (resume !== this.#owner || this.#attachments.has(resume)) {
        throw new R3mapError("ERR_INVALID_ARGUMENT", `no migration to resume for session "${resume}"`);
      }
      // The leecher is back after a dropped connection: the migration goes on.
      clearTimeout(this.#recovery);
      this.#recovery = undefined;
      session = resume;
    }
    this.#attachments.set(session, signal);
    signal.addEventListener("abort", () => this.#detached(session, signal), { once: true });
    return session;
  }

  /** An Attach stream ended. */
  #detached(session: string, signal: AbortSignal): void {
    if (this.#attachments.get(session) === signal) this.#attachments.delete(session);
    // Another leecher's attachment, or a migration that ended properly, is none of this stream's business.
    if (this.#owner !== session || this.#phase === "migrated" || this.#phase === "idle") return;
    if (this.#phase === "tracking") {
      this.#giveUp();
      return;
    }
    // After the last round the leecher may be running on what it has: wait for it to come back.
    this.#recovery = setTimeout(() => this.#giveUp(), this.#recoveryMs);
    this.#recovery.unref();
  }

  #giveUp(): void {
    this.emit("leecher-gone");
    this.resume().catch((error) => this.emit("error", error));
  }

  #progress(): Progress {
    return (
      this.resource.progress?.() ?? {
        chunksTotal: Math.ceil(this.resource.backend.size / this.resource.chunkSize),
        chunksLocal: Math.ceil(this.resource.backend.size / this.resource.chunkSize),
        bytesPulled: 0,
        bytesPushed: 0,
        dirtyChunks: 0,
        fetches: 0,
        meanFetchMs: 0,
      }
    );
  }

  #offsets(chunks: readonly number[]): number[] {
    return [...chunks].sort((a, b) => a - b).map((chunk) => chunk * this.resource.chunkSize);
  }

  #notTracking(call: string): R3mapError {
    return new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `${call} needs a Track first (the seeder is ${this.#phase})`,
    );
  }

  #setPhase(phase: SeederPhase): void {
    this.#phase = phase;
    this.emit("phase", phase);
  }
}

/** The data plane's one export. */
const DATA_EXPORT = "seed";

/**
 * The data plane's TLS, as strict as the control plane's: STARTTLS is
 * required (a client that skips it would read the resource in the clear),
 * and with `ca` every client must present a certificate it signed.
 */
function dataPlaneTls(tls: ServerTlsOptions) {
  const clientCerts = tls.ca !== undefined && tls.requireClientCert !== false;
  return {
    tls: {
      cert: tls.cert,
      key: tls.key,
      ...(clientCerts ? { ca: tls.ca, requestCert: true, rejectUnauthorized: true } : {}),
    },
    tlsRequired: true,
  };
}
