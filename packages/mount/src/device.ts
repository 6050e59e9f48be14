import type { Access } from "./access-gate.js";
import type { MountDescription } from "./description.js";
import type { EngineCache, MountEngine } from "./engine.js";
import type { FileDeviceOptions } from "./file-device.js";
import type { PathDeviceOptions } from "./path-device.js";

/**
 * What a program uses: memory (`slice`), a regular file (`file`) or a block
 * device (`path`). A *device* is how this kernel provides it: a userfaultfd
 * region, a FUSE file, a loop device over the FUSE file (kernel NBD where
 * present). One frontend may have several devices; the table in `devices.ts`
 * picks one.
 */
export type Frontend = "file" | "path" | "slice";

/** Options for the file and path devices (slices take none). */
export type DeviceOptions = FileDeviceOptions & PathDeviceOptions;

/** What a mount shows its user: a path for file and path mounts, a region id for slices. */
export interface MountHandle {
  frontend: Frontend;
  size: number;
  path?: string;
  /** A slice's region: `UffdRegion.attach(regionId)` on any thread of the process gives its memory. */
  regionId?: number;
}

/**
 * The kernel side of a mount, serving one engine. Native code serves what it
 * can (present chunks, and over NBD much of what is not); the rest reaches
 * the engine. Created over an engine that has not started yet; the mount then
 * starts the engine and calls `prime`.
 */
export interface Device {
  readonly handle: MountHandle;
  /**
   * Warms the miss path with one real miss (the engine has started), so the
   * first miss of the user does not pay lazy compilation.
   */
  prime(): Promise<void>;
  /**
   * Makes writes the kernel or the application still holds reach the engine:
   * fsync of a loop device's buffers; a slice's dirty pages found by a scan.
   * After it, `engine.sync()` pushes everything written before the call.
   */
  flush(): Promise<void>;
  /**
   * Chunks changed elsewhere (a migration's dirty chunks, a delta sync):
   * drops whatever the kernel caches of them — the FUSE file's page cache, a
   * block device's buffers, a slice's mapped pages — so that the next access
   * asks the engine again.
   */
  invalidate(chunks: readonly number[]): Promise<void>;
  /**
   * What the device's native code may answer itself (see `Access`). Locked,
   * it hands every request to the engine, which holds them, and drops what
   * the kernel cached; read-only, it hands every write to the engine, which
   * refuses it. The engine's own access is set first, by the mount.
   */
  setAccess(access: Access): Promise<void>;
  /** Detaches: unmounts, detaches the loop device, unmaps. The engine is closed by the mount after. Idempotent. */
  close(): Promise<void>;
}

/**
 * Builds one device. A builder is made per mount, so a device that brings its
 * own memory as the engine's cache (a slice's memfd) can keep it between
 * `cache` and `attach`.
 */
export interface DeviceBuilder {
  /** The description the engine is built from, when the device needs another (default: the mount's). */
  engineDescription?(description: MountDescription): MountDescription;
  /**
   * The engine's local cache, for a device that brings its own memory: called
   * once the remote's size is known, before the engine exists (`engine()`
   * returns it once it does — for callbacks that run later).
   */
  cache?(size: number, description: MountDescription, engine: () => MountEngine): EngineCache;
  /** Creates the device over an engine that has not started yet. */
  attach(engine: MountEngine, options: DeviceOptions): Promise<Device>;
  /** Releases what `cache` made, when the mount fails before `attach` took it over. */
  abandon?(): void;
}
