// Vitest globalSetup: the tests run against a build of the current sources.
//
// Tests reach other workspace packages through their `exports`, which point at
// `dist/`, and the mount engine runs in a worker thread that Node loads from
// `@r3map/mount`'s `dist/worker/engine-worker.js` — not through vitest, so not
// from sources. Importing sources in tests could not cover that worker, and
// would mix a source main thread with a built worker. So instead every test
// run first checks that the packages it uses are built from their current
// sources (and the native addon from its current C++), and builds the stale
// ones through turbo before any test starts. A fresh tree costs one walk of
// modification times; nothing is rewritten.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

interface Workspace {
  name: string;
  dir: string;
  /** Workspace packages it depends on (dependencies and devDependencies). */
  uses: string[];
}

function readJson(file: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
}

function workspaces(): Map<string, Workspace> {
  const found = new Map<string, Workspace>();
  for (const group of ["packages", "apps"]) {
    for (const entry of fs.readdirSync(path.join(root, group))) {
      const dir = path.join(root, group, entry);
      const manifest = path.join(dir, "package.json");
      if (!fs.existsSync(manifest)) continue;
      const json = readJson(manifest);
      const deps = { ...(json.dependencies as object), ...(json.devDependencies as object) };
      const uses = Object.entries(deps)
        .filter(([, version]) => String(version).startsWith("workspace:"))
        .map(([name]) => name);
      found.set(String(json.name), { name: String(json.name), dir, uses });
    }
  }
  return found;
}

/** Newest modification time of the files under `paths` that `keep` accepts (0 when none). */
function newestTime(paths: string[], keep: (file: string) => boolean): number {
  let newest = 0;
  const visit = (file: string) => {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(file);
    } catch {
      return;
    }
    if (stat.isDirectory()) {
      for (const entry of fs.readdirSync(file)) visit(path.join(file, entry));
    } else if (keep(file)) {
      newest = Math.max(newest, stat.mtimeMs);
    }
  };
  for (const file of paths) visit(file);
  return newest;
}

const isSource = (file: string) => !/\.test\.ts$/.test(file) && !file.includes(`${path.sep}test${path.sep}`);
const isNative = (file: string) => /\.(cc|h)$/.test(file) || file.endsWith("binding.gyp");

/** Whether the JavaScript build of `ws` is older than its sources (or missing). */
function distStale(ws: Workspace): boolean {
  const sources = newestTime(
    ["src", "package.json", "tsup.config.ts", "tsconfig.json"].map((p) => path.join(ws.dir, p)),
    (file) => isSource(file) && !isNative(file),
  );
  // The newest output is the last build (a restore from turbo's cache may leave older orphans beside it).
  const built = newestTime([path.join(ws.dir, "dist")], (file) => file.endsWith(".js"));
  return built === 0 || sources > built;
}

/** Whether the native addon of `ws` (if it has one) is older than its C++ sources. */
function addonStale(ws: Workspace): boolean {
  if (!fs.existsSync(path.join(ws.dir, "binding.gyp"))) return false;
  const sources = newestTime([path.join(ws.dir, "src"), path.join(ws.dir, "binding.gyp")], isNative);
  const addon = newestTime([path.join(ws.dir, "build", "Release")], (file) => file.endsWith(".node"));
  return addon === 0 || sources > addon;
}

/** `name` and every workspace package it uses, transitively. */
function closure(all: Map<string, Workspace>, name: string): Workspace[] {
  const seen = new Map<string, Workspace>();
  const visit = (next: string) => {
    const ws = all.get(next);
    if (!ws || seen.has(next)) return;
    seen.set(next, ws);
    for (const used of ws.uses) visit(used);
  };
  visit(name);
  return [...seen.values()];
}

function run(command: string, args: string[]): void {
  execFileSync(command, args, { cwd: root, stdio: ["ignore", "inherit", "inherit"] });
}

/**
 * Packages checked (and built if needed) by this process already: the root
 * and every project of a run each call the setup, and a package whose
 * sources were only touched stays "older" after turbo finds nothing to do.
 */
const CHECKED = "R3MAP_FRESH_BUILD_CHECKED";

/** Builds what the tests of the project at `projectRoot` use, if it is older than its sources. */
export function ensureFreshBuild(projectRoot: string): string[] {
  const all = workspaces();
  const name = String(readJson(path.join(projectRoot, "package.json")).name);
  const checked = new Set((process.env[CHECKED] ?? "").split(",").filter(Boolean));
  const wanted = (all.has(name) ? closure(all, name) : [...all.values()]) // the root: every package
    .filter((ws) => !checked.has(ws.name));
  process.env[CHECKED] = [...checked, ...wanted.map((ws) => ws.name)].join(",");
  const addons = wanted.filter(addonStale);
  for (const ws of addons) {
    // The addon is built by the package's install script (node-gyp), not by turbo's build.
    run("pnpm", ["--filter", ws.name, "run", "install"]);
  }
  const stale = wanted.filter(distStale);
  if (stale.length > 0) {
    run("pnpm", [
      "exec",
      "turbo",
      "run",
      "build",
      "--output-logs=errors-only",
      ...stale.map((ws) => `--filter=${ws.name}`),
    ]);
  }
  return [...addons.map((ws) => `${ws.name} (addon)`), ...stale.map((ws) => ws.name)];
}

export default function setup(project: { config: { root: string } }): void {
  ensureFreshBuild(project.config.root);
}
