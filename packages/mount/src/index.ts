export {
  DEFAULT_CHUNK_SIZE,
  type ManagedDescription,
  type MountDescription,
  type PullDescription,
  type PushDescription,
} from "./description.js";
export { MountEngine, type MountEngineEvents, priorityFromTrace } from "./engine.js";
export { FileDevice, type FileDeviceOptions } from "./file-device.js";
export { type DeviceOptions, type Frontend, HostedMount, type MountHandle } from "./hosted-mount.js";
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
export { PathDevice, type PathDeviceOptions } from "./path-device.js";
export { SliceDevice } from "./slice-device.js";
