export { type Access, AccessGate } from "./access-gate.js";
export {
  DEFAULT_CHUNK_SIZE,
  type ManagedDescription,
  type MountDescription,
  type PullDescription,
  type PushDescription,
} from "./description.js";
export type { Device, DeviceBuilder, DeviceOptions, Frontend, MountHandle } from "./device.js";
export { devices } from "./devices.js";
export { type EngineCache, MountEngine, type MountEngineEvents, priorityFromTrace } from "./engine.js";
export { FileDevice, type FileDeviceOptions, fileDevice } from "./file-device.js";
export {
  type FileMount,
  Mount,
  type MountEvents,
  type MountHooks,
  type MountOptions,
  type MountSource,
  mountFile,
  mountPath,
  mountSlice,
  type PathMount,
} from "./mount.js";
export { MountCore } from "./mount-core.js";
export { PathDevice, type PathDeviceOptions, pathDevice } from "./path-device.js";
export { SliceDevice, sliceDevice } from "./slice-device.js";
export { type WarmStartResult, warmStart } from "./warm-start.js";
