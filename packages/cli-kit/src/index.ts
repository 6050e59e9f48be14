/**
 * @r3map/cli-kit: the command-line layer shared by r3map's binaries (r3map,
 * ram-dl, ram-ul, tapisk). Each module does one job; see the README.
 */
export {
  type Address,
  type AddressDefaults,
  formatAddress,
  isLocalOnly,
  parseAddressValue,
} from "./address.js";
export { type CountLimits, parseCountValue } from "./count.js";
export { type DurationLimits, formatDuration, MAX_TIMER_MS, parseDurationValue } from "./duration.js";
export { errorLine } from "./error-line.js";
export { ExitStatus, exitStatusByCode, exitStatusOf } from "./exit-status.js";
export { addExamples, type Example } from "./help.js";
export { invalidValue } from "./invalid.js";
export { addressOption, collect, countOption, durationOption, sizeOption } from "./options.js";
export { type EventName, Output, type OutputOptions, type ProgressSample } from "./output.js";
export {
  describeProgress,
  ProgressDisplay,
  type ProgressDisplayOptions,
  type ProgressState,
} from "./progress.js";
export { RateMeter } from "./rate.js";
export { createProgram, outputFor, type ProgramInfo, runCli } from "./run.js";
export { readTokens, TOKEN_ENV, type TokenSources } from "./secrets.js";
export { type CloseControl, closeOnSignals, type SignalHandlingOptions, watchParent } from "./signals.js";
export { parseSizeValue, type SizeLimits } from "./size.js";
export { packageVersion } from "./version.js";
