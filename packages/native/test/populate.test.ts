/** populateInBackground: faults memory in on a native thread without changing a byte. */
import * as fs from "node:fs";
import { describe, expect, it } from "vitest";
import { populateInBackground } from "../src/populate.js";

const MiB = 1024 * 1024;

/** Resident memory of this process, in KiB. */
function residentKib(): number {
  const text = fs.readFileSync("/proc/self/status", "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(text)![1]);
}

describe("populateInBackground", () => {
  it("makes every page resident and leaves the content alone", async () => {
    const memory = new Uint8Array(new SharedArrayBuffer(64 * MiB));
    memory.fill(7, 0, 5000); // already written pages keep their bytes
    memory[40 * MiB] = 9;
    const before = residentKib();
    const population = populateInBackground([memory.subarray(0, 32 * MiB), memory.subarray(32 * MiB)]);
    const populated = await population.done;
    // Whole pages inside each range: at most a page lost at each unaligned end.
    expect(populated).toBeGreaterThanOrEqual(64 * MiB - 4 * 4096);
    expect(populated).toBeLessThanOrEqual(64 * MiB);
    expect(residentKib() - before).toBeGreaterThan(60 * 1024);
    expect(memory.subarray(0, 5000).every((byte) => byte === 7)).toBe(true);
    expect(memory[5000]).toBe(0);
    expect(memory[40 * MiB]).toBe(9);
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
