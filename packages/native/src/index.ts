// Exports sorted by module (biome): userfaultfd regions, dirty tracking and mmap (uffd-region, dirty-ranges,
// mmap-file); the FUSE file device, loop devices, kernel NBD and tape (fuse-file, loop-device, nbd-kernel, tape).
export {
  backendDigester,
  type DigestOptions,
  type DigestTarget,
  digestChunks,
  digestWhole,
} from "./digest.js";
export { chunksOfRanges, type DirtyRange } from "./dirty-ranges.js";
export {
  backendHandlers,
  type FuseAccess,
  FuseFile,
  type FuseFileHandlers,
  type FuseFileOptions,
  type FuseFileStats,
  type FuseLocalCache,
  type FuseRemoteReads,
} from "./fuse-file.js";
export {
  detachLoopDevice,
  type LoopAttachOptions,
  LoopDevice,
  type LoopStatus,
  listLoopDevices,
  loopStatus,
} from "./loop-device.js";
export { type MapFileOptions, MappedFile, mapFile } from "./mmap-file.js";
export {
  findFreeNbdDevice,
  isKernelNbdAvailable,
  KernelNbdDevice,
  type KernelNbdOptions,
} from "./nbd-kernel.js";
export {
  keepBackendFromChildren,
  keepFromChildren,
  type Population,
  populateInBackground,
} from "./populate.js";
export { mapSharedFile, type SharedFileOptions, syncSharedFile } from "./shared-file.js";
export {
  TapeDrive,
  type TapeOperation,
  type TapeStatus,
  tapeOperation,
  tapeOperationCode,
  tapePosition,
  tapeRead,
  tapeStatus,
  tapeWrite,
} from "./tape.js";
export { readOnThread, touchOnThread } from "./thread-read.js";
export { nativeAddonPath } from "./uffd-native.js";
export {
  type UffdAdoptOptions,
  type UffdCache,
  type UffdCapabilities,
  UffdRegion,
  type UffdRegionOptions,
  type UffdRemoteDescription,
  type UffdStats,
} from "./uffd-region.js";
