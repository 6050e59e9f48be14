export { type ConformanceOptions, describeBackendConformance, patternBytes } from "./conformance.js";
export { Gate } from "./gate.js";
export { InstrumentedBackend, plainBackend } from "./instrumented.js";
export { SEED_VARIABLE, type SeededRandom, seededRandom, testRandom } from "./random.js";
export {
  nextTurn,
  type RetryOptions,
  retryUntil,
  settlesThisTurn,
  type WaitOptions,
  waitFor,
} from "./wait.js";
