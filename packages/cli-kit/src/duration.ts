import { invalidValue } from "./invalid.js";

/** The longest delay a Node timer honours; longer ones fire after 1 ms instead. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export interface DurationLimits {
  /**
   * What 0 means for this option (e.g. "only on sync"); without it 0 is
   * refused. Shown in the message of a malformed value.
   */
  zero?: string;
  /** Shortest accepted duration in ms (default 1, or 0 when `zero` is given). */
  minMs?: number;
  /** Longest accepted duration in ms (default and at most `MAX_TIMER_MS`, about 24.8 days). */
  maxMs?: number;
}

/**
 * Parses a duration given for `name` into milliseconds: `500ms`, `5s`,
 * `1.5m`, `2h`, `1d`, combinations such as `1m30s`, or a bare number of
 * milliseconds. Throws `ERR_INVALID_ARGUMENT` with a one-line message naming
 * `name`.
 */
export function parseDurationValue(text: string, name: string, limits: DurationLimits = {}): number {
  const trimmed = text.trim();
  let ms: number | undefined;
  if (/^\d+(?:\.\d+)?$/.test(trimmed)) ms = Number(trimmed);
  else if (/^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/.test(trimmed)) {
    ms = 0;
    for (const [, value, unit] of trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) {
      ms += Number(value) * unitMs[unit!]!;
    }
  }
  if (ms === undefined || !Number.isFinite(ms)) {
    const zero = limits.zero === undefined ? "" : `; 0 = ${limits.zero}`;
    throw invalidValue(name, `"${text}" is not a duration (examples: 500ms, 5s, 1m, 1h${zero})`);
  }
  ms = Math.round(ms);
  if (ms === 0 && limits.zero !== undefined) return 0;
  const min = limits.minMs ?? 1;
  const max = Math.min(limits.maxMs ?? MAX_TIMER_MS, MAX_TIMER_MS);
  if (ms < min)
    throw invalidValue(name, `${text} is shorter than ${formatDuration(min / 1000)}, the least allowed`);
  if (ms > max)
    throw invalidValue(name, `${text} is longer than ${formatDuration(max / 1000)}, the most allowed`);
  return ms;
}

/** `3s`, `4m05s`, `2h01m`, `3d04h` — short, for progress lines and messages. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  if (seconds < 10) return `${Number(seconds.toFixed(1))}s`;
  const s = Math.round(seconds);
  const pad = (n: number) => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86_400)}d${pad(Math.floor((s % 86_400) / 3600))}h`;
}
