// FUSE file device, loop devices, kernel NBD, tape (fuse-file.ts, loop-device.ts, nbd-kernel.ts, tape.ts)
export { backendHandlers, FuseFile, type FuseFileHandlers, type FuseFileOptions, type FuseFileStats, type FuseLocalCache } from "./fuse-file.js";
// userfaultfd regions, dirty tracking, mmap (uffd-region.ts, dirty-ranges.ts, mmap-file.ts)
export { chunksOfRanges, type DirtyRange } from "./dirty-ranges.js";
export { MappedFile, type MapFileOptions, mapFile } from "./mmap-file.js";
export { nativeAddonPath } from "./uffd-native.js";
export {
  type UffdAdoptOptions,
  type UffdCache,
  UffdRegion,
  type UffdRegionOptions,
  type UffdRemoteDescription,
  type UffdStats,
} from "./uffd-region.js";
export { detachLoopDevice, LoopDevice, type LoopAttachOptions, type LoopStatus, listLoopDevices, loopStatus } from "./loop-device.js";
export { findFreeNbdDevice, isKernelNbdAvailable, KernelNbdDevice, type KernelNbdOptions } from "./nbd-kernel.js";
export {
  TapeDrive,
  type TapeOperation,
  type TapeStatus,
  tapeOperation,
  tapeOperationCode,
  tapePosition,
  tapeStatus,
} from "./tape.js";
