import { R3mapError } from "@r3map/core";

const durationUnits: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a duration the way the original's flags took them: `5m`, `30s`, `1m30s`, `250ms`, `1h`. */
export function parseDuration(text: string): number {
  const parts = [...text.trim().matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  const joined = parts.map((part) => part[0]).join("");
  if (parts.length === 0 || joined !== text.trim()) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `"${text}" is not a duration (examples: 5m, 30s, 1m30s, 250ms)`,
    );
  }
  return parts.reduce((total, [, value, unit]) => total + Number(value) * durationUnits[unit!]!, 0);
}

/** A whole number of at least `minimum` (workers: 0 turns a background part off where allowed). */
export function parseCount(text: string, name: string, minimum = 0): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < minimum) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `${name} must be a whole number of at least ${minimum}, got "${text}"`,
    );
  }
  return value;
}
