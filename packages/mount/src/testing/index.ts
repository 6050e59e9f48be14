// Test helpers for packages that mount r3map devices: the managed-mount suite
// every remote store passes, and the bookkeeping its tests share. Needs vitest
// (an optional peer dependency) and root for the mounts.
export { fioVerify, readAt, writeAt } from "./file-io.js";
export { isMountPoint, TestScope } from "./scope.js";
export { describeStoreMount, type StoreMountCase } from "./store-mount-suite.js";
