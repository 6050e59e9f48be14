import { type Progress, R3mapError, TypedEmitter } from "@r3map/core";
import { UffdRegion } from "@r3map/native";
import type { MountDescription } from "./description.js";
import { type DeviceOptions, type Frontend, HostedMount, type MountHandle } from "./hosted-mount.js";
import { SliceDevice } from "./slice-device.js";
import { deserializeError, type Notice } from "./worker/protocol.js";
import { WorkerHost } from "./worker/worker-host.js";

export interface MountOptions extends DeviceOptions {
  /**
   * Where the engine (backends, puller, pusher, miss handling) runs:
   * - `"worker"` (default): a worker thread. This thread may then touch the
   *   mount freely — read a slice, `fs.readFileSync` the file.
   * - `"this-thread"`: this thread's event loop. Then this thread must never
   *   block on the mount (no synchronous reads of the file, no touching the
   *   slice): the engine that would answer is waiting behind it.
   */
  engine?: "worker" | "this-thread";
}

export interface MountEvents {
  progress: [Progress];
  error: [unknown];
}

interface Host {
  progress(): Promise<Progress | undefined> | Progress | undefined;
  sync(): Promise<void>;
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

  private constructor(handle: MountHandle, host: Host, buffer?: Buffer) {
    super();
    this.frontend = handle.frontend;
    this.size = handle.size;
    this.path = handle.path;
    this.#host = host;
    this.#buffer = buffer;
  }

  /** @internal */
  static async open(
    frontend: Frontend,
    description: MountDescription,
    options: MountOptions,
  ): Promise<Mount> {
    const { engine = "worker", ...deviceOptions } = options;
    if (engine === "this-thread") {
      const hosted = await HostedMount.open(frontend, description, deviceOptions);
      const buffer = hosted.device instanceof SliceDevice ? hosted.device.buffer : undefined;
      const mount = new Mount(hosted.handle, hosted, buffer);
      hosted.engine.on("progress", (progress) => mount.emit("progress", progress));
      hosted.engine.on("error", (error) => mount.emit("error", error));
      return mount;
    }
    let mount: Mount | undefined;
    const host = new WorkerHost((notice: Notice) => {
      if (notice.event === "progress") mount?.emit("progress", notice.progress);
      else mount?.emit("error", deserializeError(notice.error));
    });
    const handle = await host.open(frontend, description, deviceOptions);
    // A view of the region the worker created: this thread may touch it.
    const buffer =
      handle.regionId === undefined ? undefined : UffdRegion.attach(handle.regionId).subarray(0, handle.size);
    mount = new Mount(handle, host, buffer);
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
    await this.#host.sync();
  }

  /** Flush → final push → detach the device → close the backends. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#host.close().finally(() => {
      this.#buffer = undefined;
    });
    return this.#closing;
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
export function mountFile(description: MountDescription, options: MountOptions = {}): Promise<FileMount> {
  return Mount.open("file", description, options) as Promise<FileMount>;
}

/** Mounts the resource as a block device (a loop device over the FUSE file here); `path` is /dev/loopN. */
export function mountPath(description: MountDescription, options: MountOptions = {}): Promise<PathMount> {
  return Mount.open("path", description, options) as Promise<PathMount>;
}

/** Maps the resource into memory; `buffer` is the memory (faulted in chunk by chunk). */
export function mountSlice(
  description: MountDescription,
  options: Pick<MountOptions, "engine"> = {},
): Promise<Mount> {
  return Mount.open("slice", description, options);
}
