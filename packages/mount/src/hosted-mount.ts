import type { Backend, Progress } from "@r3map/core";
import type { MountDescription } from "./description.js";
import { MountEngine } from "./engine.js";
import { FileDevice, type FileDeviceOptions } from "./file-device.js";
import { PathDevice, type PathDeviceOptions } from "./path-device.js";
import { SliceDevice } from "./slice-device.js";

export type Frontend = "file" | "path" | "slice";

export type DeviceOptions = FileDeviceOptions & PathDeviceOptions;

/** What a mount shows its user: a path for file and path mounts, a region id for slices. */
export interface MountHandle {
  frontend: Frontend;
  size: number;
  path?: string;
  regionId?: number;
}

/**
 * An engine and its device, on the thread that runs the engine. Close order:
 * flush the frontend → final push → detach the device → close the backends.
 */
export class HostedMount {
  #closing: Promise<void> | undefined;

  private constructor(
    readonly engine: MountEngine,
    readonly device: FileDevice | PathDevice | SliceDevice,
    readonly handle: MountHandle,
  ) {}

  static async open(
    frontend: Frontend,
    description: MountDescription,
    options: DeviceOptions = {},
    remote?: Backend,
  ): Promise<HostedMount> {
    if (frontend === "slice") {
      const slice = await SliceDevice.open(description, remote);
      return new HostedMount(slice.engine, slice, { frontend, size: slice.size, regionId: slice.regionId });
    }
    const engine = await MountEngine.open(description, undefined, remote ? { remote } : {});
    try {
      await engine.start(description);
      const device =
        frontend === "file"
          ? await FileDevice.attach(engine, options)
          : await PathDevice.attach(engine, options);
      return new HostedMount(engine, device, { frontend, size: engine.size, path: device.path });
    } catch (error) {
      await engine.close().catch(() => {});
      throw error;
    }
  }

  progress(): Progress | undefined {
    return this.engine.progress();
  }

  async sync(): Promise<void> {
    if (this.device instanceof PathDevice) await this.device.flush();
    if (this.device instanceof SliceDevice) await this.device.sync();
    else await this.engine.sync();
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.device instanceof SliceDevice) {
        await this.device.close();
        return;
      }
      let pushFailed: unknown;
      try {
        await this.sync();
      } catch (error) {
        pushFailed = error;
      }
      try {
        await this.device.close();
      } finally {
        // Closing the engine pushes again whatever arrived after the sync, then closes the backends.
        await this.engine.close();
      }
      if (pushFailed) throw pushFailed;
    })();
    return this.#closing;
  }
}
