export { type ConformanceOptions, describeBackendConformance, patternBytes } from "./conformance.js";
export { InstrumentedBackend, plainBackend } from "./instrumented.js";
