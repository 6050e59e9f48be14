import { R3mapError } from "./errors.js";

const multipliers: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
  p: 1024 ** 5,
  pb: 1000 ** 5,
  pib: 1024 ** 5,
  e: 1024 ** 6,
  eb: 1000 ** 6,
  eib: 1024 ** 6,
};

/**
 * Parses `4096`, `64KiB`, `1.5 GiB`, `10MB` (decimal) or `1G` (binary) into
 * bytes; units go up to EiB. Sizes are JavaScript numbers, so anything above
 * 2^53 - 1 bytes (8 PiB) is refused with a message saying so.
 */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const multiplier = match ? multipliers[match[2]!.toLowerCase()] : undefined;
  if (!match || multiplier === undefined) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `"${text}" is not a size (examples: 4096, 64KiB, 1GiB, 10MB)`,
    );
  }
  const bytes = Number(match[1]) * multiplier;
  if (bytes > Number.MAX_SAFE_INTEGER) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `"${text}" is more than 8 PiB (2^53 - 1 bytes), the largest size r3map can address`,
    );
  }
  if (!Number.isSafeInteger(bytes)) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `"${text}" is not a whole number of bytes`);
  }
  return bytes;
}

/** Formats bytes with binary units: `1.5 GiB`. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2)} ${units[unit]}`;
}
