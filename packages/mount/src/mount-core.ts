import type { Backend, Progress } from "@r3map/core";
import type { Access } from "./access-gate.js";
import type { MountDescription } from "./description.js";
import type { Device, DeviceOptions, Frontend, MountHandle } from "./device.js";
import { devices } from "./devices.js";
import { MountEngine } from "./engine.js";

/**
 * A mount on the thread that runs its engine: the engine and its device,
 * opened, synced and closed in the right order. The main thread's `Mount`
 * talks to one directly or, by default, through a worker (`WorkerHost`).
 *
 * Open: engine (with the device's own cache, for a slice) → device → start
 * the pull and push → prime the miss path. Close: flush the device → push →
 * detach the device → close the engine (a last push of anything written in
 * between) → close the backends.
 */
export class MountCore {
  #closing: Promise<void> | undefined;

  private constructor(
    readonly engine: MountEngine,
    readonly device: Device,
  ) {}

  static async open(
    frontend: Frontend,
    description: MountDescription,
    options: DeviceOptions = {},
    remote?: Backend,
  ): Promise<MountCore> {
    const builder = devices[frontend]();
    const engineDescription = builder.engineDescription?.(description) ?? description;
    let engine: MountEngine | undefined;
    const cache = builder.cache;
    try {
      engine = await MountEngine.open(
        engineDescription,
        cache && ((size) => cache(size, engineDescription, () => engine!)),
        remote ? { remote } : {},
      );
    } catch (error) {
      builder.abandon?.();
      throw error;
    }
    let device: Device | undefined;
    try {
      device = await builder.attach(engine, options);
      await engine.start();
      await device.prime();
      return new MountCore(engine, device);
    } catch (error) {
      if (device) await device.close().catch(() => {});
      else builder.abandon?.();
      await engine.close().catch(() => {});
      throw error;
    }
  }

  get handle(): MountHandle {
    return this.device.handle;
  }

  progress(): Progress | undefined {
    return this.engine.progress();
  }

  /** Makes what the device holds reach the engine, then pushes every change and syncs the remote. */
  async sync(): Promise<void> {
    await this.device.flush();
    await this.engine.sync();
  }

  /**
   * Chunks changed on the remote behind the mount's back: forgets the local
   * copies (unpushed changes to them are dropped) and the kernel's, so the
   * next access fetches them again.
   */
  async refresh(chunks: readonly number[]): Promise<void> {
    this.engine.markRemote(chunks);
    await this.device.invalidate(chunks);
  }

  /**
   * Who may use the mount: `locked` holds every read and write (native
   * paths included) until it is opened again; `read-only` refuses writes.
   * Restricting, the device goes first — it drops what the kernel cached
   * while it still answers (dropping a page waits for the read that holds
   * it) and then hands everything to the engine — and the engine's gate
   * closes after it. Opening, the gate opens first.
   */
  async setAccess(access: Access): Promise<void> {
    if (access === "open") {
      await this.engine.setAccess(access);
      await this.device.setAccess(access);
    } else {
      await this.device.setAccess(access);
      await this.engine.setAccess(access);
    }
  }

  /**
   * Opens a locked mount after `changed` chunks changed on the remote (a
   * migration's dirty chunks, already marked remote in the engine): the
   * kernel's copies are dropped, then every held request goes on. The drop
   * may wait for a held read of one of those pages, which opening releases,
   * so the two overlap.
   */
  async unlock(changed: readonly number[]): Promise<void> {
    const dropping = this.device.invalidate(changed);
    await this.setAccess("open");
    await dropping;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
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
