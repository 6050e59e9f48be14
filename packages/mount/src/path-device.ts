import * as fs from "node:fs";
import { LoopDevice } from "@r3map/native";
import type { Access } from "./access-gate.js";
import type { Device, DeviceBuilder, MountHandle } from "./device.js";
import type { MountEngine } from "./engine.js";
import { FileDevice, type FileDeviceOptions } from "./file-device.js";

export interface PathDeviceOptions extends FileDeviceOptions {
  /** The loop driver uses O_DIRECT on the FUSE file, so pages are not cached twice (default true). */
  directIo?: boolean;
}

/**
 * The path frontend on a kernel without NBD: a loop device over the FUSE file
 * (`/dev/loopN`, which mkfs, mount and swapon accept).
 */
export class PathDevice implements Device {
  readonly handle: MountHandle;

  private constructor(
    readonly file: FileDevice,
    readonly loop: LoopDevice,
  ) {
    this.handle = { frontend: "path", size: file.handle.size, path: loop.path };
  }

  static async attach(engine: MountEngine, options: PathDeviceOptions = {}): Promise<PathDevice> {
    const file = await FileDevice.attach(engine, options);
    try {
      const loop = await LoopDevice.attach(file.path, {
        // Gone with its last user: a process killed (or forced out by a second signal) leaves no loop device
        // attached to its dead FUSE file once nothing else holds the device.
        autoclear: true,
        directIo: options.directIo ?? true,
        readOnly: options.readOnly ?? engine.readOnly,
      });
      return new PathDevice(file, loop);
    } catch (error) {
      await file.close();
      throw error;
    }
  }

  /** The block device: /dev/loopN. */
  get path(): string {
    return this.loop.path;
  }

  prime(): Promise<void> {
    return this.file.prime();
  }

  /**
   * Makes the block layer hand buffered writes down (fsync of the device →
   * FUSE writes → the engine). Asynchronous on purpose: the engine that must
   * answer those writes may run on this very thread, so the blocking fsync
   * waits on a libuv pool thread instead (this is not the data path).
   */
  async flush(): Promise<void> {
    const handle = await fs.promises.open(this.loop.path, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /** Drops the FUSE file's pages and the block device's buffers (a file system mounted on it keeps its own). */
  async invalidate(chunks: readonly number[]): Promise<void> {
    await this.file.invalidate(chunks);
    await this.loop.flushBuffers();
  }

  async setAccess(access: Access): Promise<void> {
    // The block device's own buffers too, first: writing them back needs the FUSE file still served.
    // (A file system mounted on the device keeps its own caches.)
    if (access === "locked") await this.loop.flushBuffers();
    await this.file.setAccess(access);
  }

  async close(): Promise<void> {
    try {
      await this.loop.close();
    } finally {
      await this.file.close();
    }
  }
}

export const pathDevice = (): DeviceBuilder => ({
  attach: (engine, options) => PathDevice.attach(engine, options),
});
