import { R3mapError } from "@r3map/core";

/**
 * The error every value parser throws: `ERR_INVALID_ARGUMENT` with a message
 * that starts with what was being parsed (`--chunk-size: …`), so the printed
 * line tells the user which option to fix.
 */
export function invalidValue(name: string, problem: string): R3mapError {
  return new R3mapError("ERR_INVALID_ARGUMENT", `${name}: ${problem}`);
}
