/** populateInBackground: faults memory in on a native thread without changing a byte. */

import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { MemoryBackend } from "@r3map/core";
import { describe, expect, it } from "vitest";
import { keepBackendFromChildren, keepFromChildren, populateInBackground } from "../src/populate.js";

const MiB = 1024 * 1024;

/** Minor page faults this process has taken (field 10 of /proc/self/stat). */
function minorFaults(): number {
  const fields = fs.readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ");
  return Number(fields[7]);
}

/** Faults taken while writing one byte per page of `memory` right after a child process was spawned. */
function faultsOfWritesAfterSpawn(memory: Uint8Array): number {
  spawnSync("true");
  const before = minorFaults();
  for (let at = 0; at < memory.length; at += 4096) memory[at] = 1;
  return minorFaults() - before;
}

describe("keepFromChildren", () => {
  it("spares a cache the copy-on-write faults a spawned child would cost it", () => {
    const pages = (32 * MiB) / 4096;
    const plain = new Uint8Array(new SharedArrayBuffer(32 * MiB)).fill(7);
    expect(faultsOfWritesAfterSpawn(plain)).toBeGreaterThan(pages / 2);
    const kept = new MemoryBackend(32 * MiB);
    kept.segments[0]!.fill(7);
    keepBackendFromChildren(kept);
    expect(faultsOfWritesAfterSpawn(kept.segments[0]!)).toBeLessThan(pages / 8);
    expect(keepFromChildren(new Uint8Array(100))).toBe(true); // less than a page: nothing to advise
  });
});

describe("populateInBackground", () => {
  it("makes every page resident and leaves the content alone", async () => {
    const memory = new Uint8Array(new SharedArrayBuffer(64 * MiB));
    memory.fill(7, 0, 5000); // already written pages keep their bytes
    memory[40 * MiB] = 9;
    const population = populateInBackground([memory.subarray(0, 32 * MiB), memory.subarray(32 * MiB)]);
    const populated = await population.done;
    // Whole pages inside each range: at most a page lost at each unaligned end.
    expect(populated).toBeGreaterThanOrEqual(64 * MiB - 4 * 4096);
    expect(populated).toBeLessThanOrEqual(64 * MiB);
    expect(memory.subarray(0, 5000).every((byte) => byte === 7)).toBe(true);
    expect(memory[5000]).toBe(0);
    expect(memory[40 * MiB]).toBe(9);
    // Resident: writing every page now takes (almost) no faults. (Not the process's RSS, which the
    // collection of other tests' buffers can lower meanwhile.)
    const faultsBefore = minorFaults();
    for (let at = 4096; at < memory.length; at += 4096) memory[at] = 1;
    expect(minorFaults() - faultsBefore).toBeLessThan(memory.length / 4096 / 8);
  });

  it("stops early when asked, and the memory stays usable", async () => {
    const memory = new Uint8Array(new SharedArrayBuffer(512 * MiB));
    const population = populateInBackground([memory]);
    population.stop();
    expect(await population.done).toBeLessThan(512 * MiB);
    memory[512 * MiB - 1] = 1;
    expect(memory[512 * MiB - 1]).toBe(1);
  });

  it("rejects arguments that are not typed arrays", async () => {
    // @ts-expect-error: checked at run time by the addon
    await expect(populateInBackground(["nope"]).done).rejects.toThrow(/populateMemory/);
  });
});
