import { type Backend, type ChunkOrigin, type Progress, R3mapError, TypedEmitter } from "@r3map/core";
import { UffdRegion } from "@r3map/native";
import type { MountDescription } from "./description.js";
import type { DeviceOptions, Frontend, MountHandle } from "./device.js";
import { MountCore } from "./mount-core.js";
import { deserializeError, type Notice } from "./worker/protocol.js";
import { WorkerHost } from "./worker/worker-host.js";

/** Called by the mount at the points the original r3map offered hooks. */
export interface MountHooks {
  /** Before changes are pushed on `sync()` (e.g. suspend the application, flush its buffers). */
  beforeSync?: () => void | Promise<void>;
  /** Once, before `close()` starts. */
  beforeClose?: () => void | Promise<void>;
  /** A chunk became local (fetched, pulled or written whole). Fires whether or not pushing is on. */
  onChunkLocal?: (chunk: number, origin: ChunkOrigin) => void;
}

export interface MountOptions extends DeviceOptions {
  hooks?: MountHooks;
  /**
   * Where the engine (backends, puller, pusher, miss handling) runs:
   * - `"worker"` (default): a worker thread. This thread may then touch the
   *   mount freely — read a slice, `fs.readFileSync` the file.
   * - `"this-thread"`: this thread's event loop. Then this thread must never
   *   block on the mount (no synchronous reads of the file, no touching the
   *   slice): the engine that would answer is waiting behind it.
   * Default: "worker", or "this-thread" when the remote is a Backend object
   * (objects cannot cross to a worker).
   */
  engine?: "worker" | "this-thread";
}

/** A description whose remote is a Backend object the caller made (same-thread engine only). */
export type MountSource =
  | MountDescription
  | (Omit<MountDescription, "remote" | "schemes"> & { remote: Backend });

export interface MountEvents {
  progress: [Progress];
  "chunk-local": [chunk: number, origin: ChunkOrigin];
  error: [unknown];
}

/** The engine's side of a mount, as this thread sees it: a `MountCore` here, or a worker running one. */
interface Host {
  progress(): Promise<Progress | undefined> | Progress | undefined;
  sync(): Promise<void>;
  refresh(chunks: readonly number[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * A mounted resource. `path` (file and path mounts) or `buffer` (slices) is
 * what the program uses; `sync()` pushes changes to the remote; `close()`
 * flushes, pushes, detaches the device and closes the backends, once.
 */
export class Mount extends TypedEmitter<MountEvents> implements AsyncDisposable {
  readonly frontend: Frontend;
  readonly size: number;
  /** The file (file mounts) or the block device (path mounts). */
  readonly path: string | undefined;
  readonly #host: Host;
  #buffer: Buffer | undefined;
  #closing: Promise<void> | undefined;

  readonly #hooks: MountHooks;

  private constructor(handle: MountHandle, host: Host, hooks: MountHooks) {
    super();
    this.#hooks = hooks;
    this.frontend = handle.frontend;
    this.size = handle.size;
    this.path = handle.path;
    this.#host = host;
    // A slice's memory, mapped by the engine's thread: a view of it here, which this thread may touch.
    this.#buffer =
      handle.regionId === undefined ? undefined : UffdRegion.attach(handle.regionId).subarray(0, handle.size);
  }

  /** @internal */
  static async open(frontend: Frontend, source: MountSource, options: MountOptions): Promise<Mount> {
    const { engine, hooks = {}, ...deviceOptions } = options;
    const given = typeof source.remote === "string" ? undefined : source.remote;
    if (given && engine === "worker") {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        "a Backend object cannot move to a worker thread: describe the remote by URI, or use engine: 'this-thread'",
      );
    }
    if (given || engine === "this-thread") {
      const description = { ...source, remote: given ? "" : (source.remote as string) };
      const core = await MountCore.open(frontend, description, deviceOptions, given);
      const mount = new Mount(core.handle, core, hooks);
      core.engine.on("progress", (progress) => mount.emit("progress", progress));
      core.engine.on("error", (error) => mount.emit("error", error));
      core.engine.on("chunk-local", (chunk, origin) => mount.chunkBecameLocal(chunk, origin));
      return mount;
    }
    let mount: Mount | undefined;
    const host = new WorkerHost((notice: Notice) => {
      if (notice.event === "progress") mount?.emit("progress", notice.progress);
      else if (notice.event === "chunk-local") mount?.chunkBecameLocal(notice.chunk, notice.origin);
      else mount?.emit("error", deserializeError(notice.error));
    });
    const description = source as MountDescription;
    const handle = await host.open(frontend, description, deviceOptions, hooks.onChunkLocal !== undefined);
    mount = new Mount(handle, host, hooks);
    return mount;
  }

  /** The memory of a slice mount. */
  get buffer(): Buffer {
    if (!this.#buffer)
      throw new R3mapError("ERR_NOT_SUPPORTED", `a ${this.frontend} mount has no buffer; use path`);
    return this.#buffer;
  }

  /** Chunks local, bytes pulled and pushed, dirty chunks (managed mounts; undefined for direct ones). */
  async progress(): Promise<Progress | undefined> {
    return this.#host.progress();
  }

  /** Flushes the frontend and pushes every change to the remote. */
  async sync(): Promise<void> {
    if (this.#closing) throw new R3mapError("ERR_CLOSED", "the mount is closed");
    await this.#hooks.beforeSync?.();
    await this.#host.sync();
  }

  /**
   * Chunks that changed on the remote behind the mount's back (another
   * writer, a restored snapshot): the mount forgets its local copies —
   * changes to them not yet pushed are dropped — and the kernel's cached
   * pages of them, so the next access reads the remote's bytes.
   */
  async refresh(chunks: readonly number[]): Promise<void> {
    if (this.#closing) throw new R3mapError("ERR_CLOSED", "the mount is closed");
    await this.#host.refresh(chunks);
  }

  /** Flush → final push → detach the device → close the backends. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        await this.#hooks.beforeClose?.();
        await this.#hooks.beforeSync?.();
      } finally {
        await this.#host.close().finally(() => {
          this.#buffer = undefined;
        });
      }
    })();
    return this.#closing;
  }

  /** @internal Calls the hook and emits "chunk-local". */
  chunkBecameLocal(chunk: number, origin: ChunkOrigin): void {
    this.#hooks.onChunkLocal?.(chunk, origin);
    this.emit("chunk-local", chunk, origin);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

export interface FileMount extends Mount {
  readonly path: string;
}

export interface PathMount extends Mount {
  readonly path: string;
}

/** Mounts the resource as one regular file on a FUSE mount; `path` is the file. */
export function mountFile(source: MountSource, options: MountOptions = {}): Promise<FileMount> {
  return Mount.open("file", source, options) as Promise<FileMount>;
}

/** Mounts the resource as a block device (a loop device over the FUSE file here); `path` is /dev/loopN. */
export function mountPath(source: MountSource, options: MountOptions = {}): Promise<PathMount> {
  return Mount.open("path", source, options) as Promise<PathMount>;
}

/** Maps the resource into memory; `buffer` is the memory (faulted in chunk by chunk). */
export function mountSlice(
  source: MountSource,
  options: Pick<MountOptions, "engine" | "hooks"> = {},
): Promise<Mount> {
  return Mount.open("slice", source, options);
}
