#!/usr/bin/env node
// Runs the fuzz suites (NBD frames, Connect messages) against server processes
// for as long as asked, then prints how many cases ran, the servers' peak RSS,
// and for a failure the command that replays it.
//
//   pnpm fuzz [--minutes N | --runs N] [--seed N] [--path P] [--only nbd|connect]
//
// Without --seed a random seed is chosen (and printed). Each suite runs its own
// server; both run at once, each for the whole duration. Builds first.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const suites = { nbd: "@r3map/nbd", connect: "@r3map/transport-connect" };

const { values } = parseArgs({
  options: {
    minutes: { type: "string" },
    runs: { type: "string" },
    seed: { type: "string" },
    path: { type: "string" },
    only: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  process.stderr.write(
    "usage: pnpm fuzz [--minutes N | --runs N] [--seed N] [--path P] [--only nbd|connect]\n",
  );
  process.exit(0);
}
const fail = (message) => {
  process.stderr.write(`fuzz: ${message}\n`);
  process.exit(2);
};
const positive = (name) => {
  const value = Number(values[name]);
  if (!Number.isFinite(value) || value <= 0) fail(`--${name} must be a positive number, got ${values[name]}`);
  return value;
};
if (values.minutes !== undefined && values.runs !== undefined) fail("give --minutes or --runs, not both");
if (values.only !== undefined && !(values.only in suites)) fail(`--only must be nbd or connect`);
const minutes =
  values.minutes === undefined ? (values.runs === undefined ? 1 : undefined) : positive("minutes");
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
if (!Number.isSafeInteger(seed)) fail(`--seed must be an integer, got ${values.seed}`);
const chosen = values.only ? [values.only] : Object.keys(suites);

const root = new URL("..", import.meta.url).pathname;
const reports = mkdtempSync(join(tmpdir(), "r3map-fuzz-"));
const say = (text) => process.stderr.write(`${text}\n`);

say(
  `fuzz: ${chosen.join(" and ")}, seed ${seed}, ${minutes === undefined ? `${values.runs} cases each` : `${minutes} minute(s)`}`,
);
const build = spawnSync("pnpm", ["build"], { cwd: root, stdio: ["ignore", "ignore", "inherit"] });
if (build.status !== 0) fail("the build failed");

const env = {
  ...process.env,
  R3MAP_FUZZ_SEED: String(seed),
  R3MAP_FUZZ_REPORT_DIR: reports,
  ...(minutes === undefined
    ? { R3MAP_FUZZ_RUNS: values.runs }
    : { R3MAP_FUZZ_SECONDS: String(minutes * 60) }),
  ...(values.path ? { R3MAP_FUZZ_PATH: values.path } : {}),
};
const projects = chosen.flatMap((suite) => ["--project", suites[suite]]);
const run = spawnSync("pnpm", ["exec", "vitest", "run", ...projects, "test/fuzz.test.ts"], {
  cwd: root,
  env,
  stdio: "inherit",
});

let failed = run.status !== 0;
say("");
for (const file of readdirSync(reports)) {
  const report = JSON.parse(readFileSync(join(reports, file), "utf8"));
  const mib = (bytes) => (bytes / 1024 / 1024).toFixed(0);
  say(
    `${report.suite}: ${report.cases} cases, server RSS ${mib(report.startRssBytes)} MiB at the start, peak ${mib(report.peakRssBytes)} MiB`,
  );
  if (report.failure) {
    failed = true;
    const path = /path: "([^"]+)"/.exec(report.failure)?.[1];
    say(`  FAILED (seed ${seed}): ${report.failure.split("\n").slice(0, 8).join("\n  ")}`);
    say(`  replay: pnpm fuzz --only ${report.suite} --seed ${seed}${path ? ` --path ${path}` : ""} --runs 1`);
  }
}
rmSync(reports, { recursive: true, force: true });
say(failed ? `fuzz: FAILED (seed ${seed})` : `fuzz: no failure (seed ${seed})`);
process.exit(failed ? 1 : 0);
