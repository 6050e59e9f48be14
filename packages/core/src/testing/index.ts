export { type ConformanceOptions, describeBackendConformance, patternBytes } from "./conformance.js";
export {
  describeServerFuzz,
  expectServerIntact,
  type FuzzRunOptions,
  type FuzzSettings,
  fuzzSettings,
  type ServerFuzz,
  within,
} from "./fuzz.js";
export { Gate } from "./gate.js";
export { InstrumentedBackend, plainBackend } from "./instrumented.js";
export { SEED_VARIABLE, type SeededRandom, seededRandom, testRandom } from "./random.js";
export { type ServerProcess, startServerProcess } from "./server-process.js";
export { Tmpfs } from "./tmpfs.js";
export {
  nextTurn,
  type RetryOptions,
  retryUntil,
  settlesThisTurn,
  type WaitOptions,
  waitFor,
} from "./wait.js";
