export { DriveTape } from "./drive-tape.js";
export { type HeadCounters, HeadScheduler, type HeadSchedulerOptions } from "./head-scheduler.js";
export { openTape, parseSimulatedDrive } from "./open-tape.js";
export { SimulatedTape, type SimulatedTapeOptions, type TapeCounters } from "./simulated-tape.js";
export type { Tape } from "./tape.js";
export { TapeBackend, type TapeBackendOptions } from "./tape-backend.js";
export { TapeIndex, type TapeIndexLayout } from "./tape-index.js";
export { startTapisk, type Tapisk, type TapiskOptions } from "./tapisk.js";
