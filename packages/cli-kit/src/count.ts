import { invalidValue } from "./invalid.js";

export interface CountLimits {
  /** Smallest accepted count (default 0). */
  min?: number;
  /** Largest accepted count (default 2^53 - 1). */
  max?: number;
}

/**
 * Parses a whole number given for `name` (digits only: no sign, fraction or
 * exponent) and checks it against `limits`. Throws `ERR_INVALID_ARGUMENT`
 * with a one-line message naming `name`.
 */
export function parseCountValue(text: string, name: string, limits: CountLimits = {}): number {
  const trimmed = text.trim();
  const count = Number(trimmed);
  if (!/^\d+$/.test(trimmed) || !Number.isSafeInteger(count)) {
    throw invalidValue(name, `"${text}" is not a whole number (examples: 0, 8, 32)`);
  }
  const min = limits.min ?? 0;
  if (count < min) throw invalidValue(name, `${count} is less than ${min}, the smallest allowed`);
  if (limits.max !== undefined && count > limits.max) {
    throw invalidValue(name, `${count} is more than ${limits.max}, the largest allowed`);
  }
  return count;
}
