// FUSE file device, loop devices, kernel NBD, tape (fuse-file.ts, loop-device.ts, nbd-kernel.ts, tape.ts)
export { backendHandlers, FuseFile, type FuseFileHandlers, type FuseFileOptions, type FuseFileStats, type FuseLocalCache } from "./fuse-file.js";
