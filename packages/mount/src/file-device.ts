import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { type FuseAccess, FuseFile, readOnThread } from "@r3map/native";
import type { Access } from "./access-gate.js";
import { runsOf } from "./chunk-runs.js";
import type { Device, DeviceBuilder, MountHandle } from "./device.js";
import type { MountEngine } from "./engine.js";
import { handOff } from "./hand-off.js";

export interface FileDeviceOptions {
  /** An empty directory to mount on; default: a new temporary directory, removed on close. */
  mountPoint?: string;
  /** Name of the file in the mount (default "disk"). */
  fileName?: string;
  /** Refuse writes (default: the remote's own read-only flag). */
  readOnly?: boolean;
  /**
   * The kernel's readahead for the file, in KiB (default 16384). The kernel
   * keeps about two readahead requests in flight, so a direct mount reads
   * about 2 × readahead per round trip: a remote at 10 ms needs megabytes.
   */
  readAheadKb?: number;
}

/**
 * The file frontend: one regular file on a FUSE mount. Present chunks of a
 * managed mount are read natively from the local cache. Over NBD, what is
 * not local is read natively from the server (a connection of its own, see
 * `FuseRemoteReads`): every read of a direct mount, and a managed mount's
 * small misses while its pull runs (which then fetches those chunks next).
 * Whole-chunk writes to chunks not yet local are stored natively. Other
 * misses and writes, and fsync, reach the engine on the thread that created
 * the device.
 */
export class FileDevice implements Device {
  readonly handle: MountHandle;
  readonly #fuse: FuseFile;
  readonly #engine: MountEngine;
  readonly #ownedMountPoint: string | undefined;

  private constructor(engine: MountEngine, fuse: FuseFile, ownedMountPoint: string | undefined) {
    this.#engine = engine;
    this.#fuse = fuse;
    this.#ownedMountPoint = ownedMountPoint;
    this.handle = { frontend: "file", size: engine.size, path: fuse.path };
  }

  static async attach(engine: MountEngine, options: FileDeviceOptions = {}): Promise<FileDevice> {
    const owned = options.mountPoint ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), "r3map-mount-"));
    const mountPoint = options.mountPoint ?? owned!;
    const native = engine.nativeCache();
    const readOnly = options.readOnly ?? engine.readOnly;
    // Over NBD the FUSE threads read what is not local from the server themselves: always for a direct
    // mount; for a managed one only small misses, only while its pull runs (it then fetches those chunks
    // next, so the cache still fills) and only where native code knows what is local.
    const readsRemote = engine.pipeline === undefined || (native !== undefined && engine.pulls);
    const remoteReads = readsRemote ? await handOff(engine.remote) : undefined;
    try {
      const fuse = await FuseFile.mount({
        mountPoint,
        size: engine.size,
        ...(options.fileName ? { fileName: options.fileName } : {}),
        readOnly,
        readAheadKb: options.readAheadKb ?? 16384,
        ...(native
          ? // Huge pages are the engine's call: it advises them where it populates the cache in the background.
            {
              local: {
                chunkSize: engine.chunkSize,
                presence: native.presence,
                hugePages: false,
                ...native.cache,
                // Writes to present chunks are stored natively; the pusher takes their bits.
                ...(native.written ? { dirty: native.written } : {}),
                // The claims on chunks being written into the cache: whole-chunk writes to chunks not
                // yet local are stored natively once they hold their chunks' bits.
                inFlight: native.inFlight,
              },
            }
          : {}),
        ...(remoteReads
          ? {
              remoteReads,
              onRemoteRead: (offset: number, length: number) => engine.readFromRemote(offset, length),
            }
          : {}),
        onRead: async (offset, length) => {
          const buffer = new Uint8Array(length);
          await engine.backend.readAt(buffer, offset);
          return buffer;
        },
        ...(readOnly
          ? {}
          : { onWrite: (offset: number, data: Uint8Array) => engine.backend.writeAt(data, offset) }),
        onFsync: () => engine.sync(),
        onStoredWhole: (offset, length) => engine.storedNatively(offset, length),
      });
      return new FileDevice(engine, fuse, owned);
    } catch (error) {
      remoteReads?.socket.destroy();
      if (owned) fs.rmSync(owned, { recursive: true, force: true });
      throw error;
    }
  }

  /** The file's path. */
  get path(): string {
    return this.#fuse.path;
  }

  get mountPoint(): string {
    return this.#fuse.mountPoint;
  }

  /** Native and forwarded request counts. */
  stats() {
    return this.#fuse.stats();
  }

  /** Warms the whole miss path, FUSE dispatch included, with one real read on a native thread. */
  prime(): Promise<void> {
    return this.#engine.prime((offset, length) => readOnThread(this.#fuse.path, offset, length));
  }

  /** Writes reach the engine before they return (the file is written through): nothing is held. */
  async flush(): Promise<void> {}

  async invalidate(chunks: readonly number[]): Promise<void> {
    const { chunkSize } = this.#engine;
    for (const [first, count] of runsOf(chunks)) {
      await this.#fuse.invalidate(
        first * chunkSize,
        Math.min(count * chunkSize, this.#fuse.size - first * chunkSize),
      );
    }
  }

  async setAccess(access: Access): Promise<void> {
    // Pages the kernel cached would still be read without asking us: dropped while reads are still
    // answered (dropping waits for a read in progress on the page, which a locked engine would hold).
    if (access === "locked") await this.#fuse.invalidate();
    this.#fuse.setAccess(FUSE_ACCESS[access]);
  }

  /** Unmounts (waiting for requests in flight) and removes a mount point it created. */
  async close(): Promise<void> {
    await this.#fuse.close();
    if (this.#ownedMountPoint) fs.rmSync(this.#ownedMountPoint, { recursive: true, force: true });
  }
}

const FUSE_ACCESS: Record<Access, FuseAccess> = {
  open: "serve",
  "read-only": "forward-writes",
  locked: "forward-all",
};

export const fileDevice = (): DeviceBuilder => ({
  attach: (engine, options) => FileDevice.attach(engine, options),
});
