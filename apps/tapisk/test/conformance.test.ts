import * as fs from "node:fs";
import { ArbitraryStage } from "@r3map/core";
import { describeBackendConformance } from "@r3map/core/testing";
import { afterAll } from "vitest";
import { openSimulated, scratchDirectory } from "./helpers.js";

// Each backend gets a fresh simulated tape and index; `reopen` opens the last one again.
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

function fresh(): string {
  const dir = scratchDirectory("conformance");
  dirs.push(dir);
  return dir;
}

describeBackendConformance(
  "tape backend over a simulated tape (whole 4 KiB blocks)",
  async (size) => (await openSimulated(fresh(), size, { gatherMs: 0 })).backend,
  {
    wholeChunks: 4096,
    reopen: async (size) => (await openSimulated(dirs.at(-1)!, size, { gatherMs: 0 })).backend,
  },
);

describeBackendConformance(
  "arbitrary stage over the tape backend (any offset and length)",
  async (size) => new ArbitraryStage((await openSimulated(fresh(), size, { gatherMs: 0 })).backend, 4096),
  {
    reopen: async (size) =>
      new ArbitraryStage((await openSimulated(dirs.at(-1)!, size, { gatherMs: 0 })).backend, 4096),
  },
);
