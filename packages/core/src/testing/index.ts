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
export { InstrumentedBackend } from "./instrumented.js";
export { type ServerProcess, startServerProcess } from "./server-process.js";
