#!/usr/bin/env node
/**
 * `pnpm bench [name…] [--budget-ms N]`: runs the benchmarks in ./benches,
 * prints a table, and writes results/latest.json and results/latest.svg.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { renderChart } from "./chart.js";
import type { Benchmark, BenchResult } from "./harness.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const resultsDir = path.resolve(here, "..", "results");

async function loadBenchmarks(): Promise<Benchmark[]> {
  const dir = path.join(here, "benches");
  const files = fs
    .readdirSync(dir)
    .filter((file) => file.endsWith(".js"))
    .sort();
  const loaded: Benchmark[] = [];
  for (const file of files) {
    const module = (await import(pathToFileURL(path.join(dir, file)).href)) as { default?: Benchmark };
    if (module.default?.run) loaded.push(module.default);
  }
  return loaded;
}

function parseArgs(argv: string[]): { names: string[]; budgetMs: number } {
  const names: string[] = [];
  let budgetMs = 20_000;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--budget-ms") budgetMs = Number(argv[++i]);
    else if (arg !== "--") names.push(arg);
  }
  return { names, budgetMs };
}

function printTable(rows: BenchResult[]): void {
  const header = ["benchmark", "value", "unit", "baseline", "baseline value", "ratio"];
  const cells = rows.map((r) => [
    r.name,
    String(r.value),
    r.unit,
    r.baseline,
    String(r.baseline_value),
    r.ratio.toFixed(3),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) =>
    row
      .map((cell, i) => (i === 0 || i === 3 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join("  ");
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of cells) console.log(line(row));
}

async function main(): Promise<void> {
  const { names, budgetMs } = parseArgs(process.argv.slice(2));
  const all = await loadBenchmarks();
  const unknown = names.filter((name) => !all.some((b) => b.name === name));
  if (unknown.length > 0) {
    console.error(`unknown benchmark(s): ${unknown.join(", ")}; known: ${all.map((b) => b.name).join(", ")}`);
    process.exit(2);
  }
  const selected = names.length > 0 ? all.filter((b) => names.includes(b.name)) : all;
  const results: BenchResult[] = [];
  const skipped: string[] = [];
  for (const benchmark of selected) {
    const reason = await benchmark.skip?.();
    if (reason) {
      skipped.push(`${benchmark.name}: ${reason}`);
      console.error(`[bench] skip ${benchmark.name}: ${reason}`);
      continue;
    }
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), `r3map-bench-${benchmark.name}-`));
    const started = performance.now();
    console.error(`[bench] ${benchmark.name}: ${benchmark.description}`);
    try {
      const rows = await benchmark.run({
        scratch,
        budgetMs,
        log: (message) => console.error(`[bench] ${benchmark.name}: ${message}`),
      });
      results.push(...rows);
    } catch (error) {
      skipped.push(`${benchmark.name}: failed: ${(error as Error).message}`);
      console.error(`[bench] ${benchmark.name} failed:`, error);
      process.exitCode = 1;
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
      console.error(`[bench] ${benchmark.name} took ${((performance.now() - started) / 1000).toFixed(1)} s`);
    }
  }
  printTable(results);
  if (skipped.length > 0) console.log(`\nnot run:\n  ${skipped.join("\n  ")}`);
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, "latest.json"), `${JSON.stringify(results, null, 2)}\n`);
  fs.writeFileSync(path.join(resultsDir, "latest.svg"), renderChart(results));
  console.log(`\nwrote ${path.join(resultsDir, "latest.json")} and latest.svg`);
}

await main();
