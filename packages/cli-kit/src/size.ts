import { formatBytes, parseSize } from "@r3map/core";
import { invalidValue } from "./invalid.js";

export interface SizeLimits {
  /** Smallest accepted size in bytes. */
  min?: number;
  /** Largest accepted size in bytes (at most 2^53 - 1, what any size can be). */
  max?: number;
  /** The size must be a multiple of this (e.g. 4096 for a page). */
  multipleOf?: number;
}

/**
 * Parses a size given for `name` (`4096`, `64KiB`, `1.5GiB`, `10MB`; units up
 * to EiB) and checks it against `limits`. Throws `ERR_INVALID_ARGUMENT` with
 * a one-line message naming `name`.
 */
export function parseSizeValue(text: string, name: string, limits: SizeLimits = {}): number {
  let bytes: number;
  try {
    bytes = parseSize(text);
  } catch (error) {
    throw invalidValue(name, (error as Error).message);
  }
  if (limits.min !== undefined && bytes < limits.min) {
    throw invalidValue(name, `${text} is less than ${formatLimit(limits.min)}, the smallest allowed`);
  }
  if (limits.max !== undefined && bytes > limits.max) {
    throw invalidValue(name, `${text} is more than ${formatLimit(limits.max)}, the largest allowed`);
  }
  if (limits.multipleOf !== undefined && bytes % limits.multipleOf !== 0) {
    throw invalidValue(name, `${text} is not a multiple of ${formatLimit(limits.multipleOf)}`);
  }
  return bytes;
}

/** `4 KiB` rather than `4.00 KiB` for the round numbers limits are. */
function formatLimit(bytes: number): string {
  return formatBytes(bytes).replace(/\.0+ /, " ");
}
