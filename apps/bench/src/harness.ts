/**
 * The benchmark harness. Each file in `src/benches/` default-exports a
 * `Benchmark`; `pnpm bench` runs them all (or those named on the command line),
 * prints one table and writes `results/latest.json` and `results/latest.svg`.
 *
 * Every result carries a baseline measured in the same run (memcpy, a raw
 * socket, a C reference program, nbdkit…) and the ratio value / baseline_value
 * (for throughput: higher is better; for latency the benchmark states which
 * way is better in its name). The machine is shared and noisy, so only ratios
 * are comparable across runs.
 */
export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  baseline: string;
  baseline_value: number;
  ratio: number;
}

export interface BenchContext {
  /** A scratch directory, removed after the run. */
  scratch: string;
  /** Rough time budget for this benchmark, in milliseconds; stay near it. */
  budgetMs: number;
  /** Progress output (stderr). */
  log(message: string): void;
}

export interface Benchmark {
  /** Short identifier, used to select it: `pnpm bench pipeline`. */
  name: string;
  /** What it measures, one line. */
  description: string;
  /** When it cannot run here: the reason (it is then reported as skipped). */
  skip?(): string | undefined | Promise<string | undefined>;
  run(context: BenchContext): Promise<BenchResult[]>;
}

/** Builds a result with its ratio. */
export function result(
  name: string,
  value: number,
  unit: string,
  baseline: string,
  baselineValue: number,
): BenchResult {
  return {
    name,
    value: round(value),
    unit,
    baseline,
    baseline_value: round(baselineValue),
    ratio: baselineValue === 0 ? 0 : round(value / baselineValue, 3),
  };
}

function round(value: number, digits = 2): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/**
 * Runs `operation` repeatedly for about `ms` milliseconds (at least `minRuns`
 * times) and returns the median duration of one run in milliseconds. The
 * median resists the noise of a shared machine better than the mean.
 */
export async function medianMs(operation: () => unknown, ms: number, minRuns = 3): Promise<number> {
  const samples: number[] = [];
  const deadline = performance.now() + ms;
  while (samples.length < minRuns || performance.now() < deadline) {
    const start = performance.now();
    await operation();
    samples.push(performance.now() - start);
    if (samples.length >= 1000) break;
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

/** MiB/s for `bytes` moved in `ms` milliseconds. */
export function mibPerSecond(bytes: number, ms: number): number {
  return bytes / (1024 * 1024) / (ms / 1000);
}
