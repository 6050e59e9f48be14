import { type Backend, type Progress, TrackingStage } from "@r3map/core";
import { AccessGate, type MountCore } from "@r3map/mount";

/**
 * What a seeder needs of the resource it migrates away: its current bytes,
 * the chunks written from a point in time on — whichever way a write
 * arrives — and a way to stop writes after the last round.
 */
export interface SeededResource {
  /** The resource's current bytes, as the leecher reads them (not through a page cache). */
  readonly backend: Backend;
  /** Writes are tracked per chunk of this size. */
  readonly chunkSize: number;
  trackWrites(): void;
  /** Chunks written since tracking began or the previous call; tracking goes on. */
  takeTrackedWrites(): number[];
  /** Chunks written since the previous call; tracking stops. */
  stopTracking(): number[];
  /** Makes writes the kernel or the application still holds reach the resource (fsync, a dirty-page scan). */
  flush(): Promise<void>;
  /** Refuses (false) or allows (true) writes; refusing waits for writes already under way. */
  setWritable(writable: boolean): Promise<void>;
  progress?(): Progress | undefined;
}

/**
 * A mount as a seeder's resource: its engine's backend (which reads the
 * current content, through the cache of a managed mount), its write
 * tracking (engine stages, native writes, a slice's dirty pages) and its
 * access (read-only stops writes at the device and in the engine).
 */
export function mountResource(core: MountCore): SeededResource {
  const { engine } = core;
  return {
    backend: engine.backend,
    chunkSize: engine.chunkSize,
    trackWrites: () => engine.trackWrites(),
    takeTrackedWrites: () => engine.takeTrackedWrites(),
    stopTracking: () => engine.stopTracking(),
    flush: () => core.device.flush(),
    setWritable: (writable) => core.setAccess(writable ? "open" : "read-only"),
    progress: () => core.progress(),
  };
}

/**
 * A plain backend as a seeder's resource. The application must write
 * through the returned `backend` (it tracks and can refuse writes); reads
 * and writes made around it are not seen.
 */
export function backendResource(backend: Backend, chunkSize: number): SeededResource {
  const tracking = new TrackingStage(backend, chunkSize);
  const gate = new AccessGate(tracking);
  return {
    backend: gate,
    chunkSize,
    trackWrites: () => tracking.track(),
    takeTrackedWrites: () => tracking.takeDirty(),
    stopTracking: () => tracking.stopTracking(),
    flush: async () => {},
    setWritable: (writable) => gate.set(writable ? "open" : "read-only"),
  };
}
