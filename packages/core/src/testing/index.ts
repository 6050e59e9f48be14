export { type ConformanceOptions, describeBackendConformance, patternBytes } from "./conformance.js";
export { type FuzzSettings, fuzzSettings } from "./fuzz.js";
export { InstrumentedBackend } from "./instrumented.js";
export { type ServerProcess, startServerProcess } from "./server-process.js";
