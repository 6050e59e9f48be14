/**
 * The demo migration's helpers on a thread of their own, over a slice's
 * memory (the main thread serves the slice's faults and must never touch
 * it): `write` changes random ranges of a working set (a sixteenth of the
 * memory, as applications mostly write to some of theirs) until told to
 * stop — the application running on the seeder — and `hash` reports the
 * memory's SHA-256.
 *
 * workerData: { mode, regionId, size, control?: SharedArrayBuffer }; control is
 * Int32 [0] 0 run, 1 stop · [1] writes so far (notified after each).
 * Messages out: { writes } (write, once stopped) · { sha256 } (hash).
 */
import { createHash, randomFillSync, randomInt } from "node:crypto";
import { parentPort, workerData } from "node:worker_threads";
import { UffdRegion } from "@r3map/native";

const { mode, regionId, size, control } = workerData as {
  mode: "write" | "hash";
  regionId: number;
  size: number;
  control?: SharedArrayBuffer;
};
const memory = UffdRegion.attach(regionId).subarray(0, size);

if (mode === "hash") {
  parentPort!.postMessage({ sha256: createHash("sha256").update(memory).digest("hex") });
} else {
  const state = new Int32Array(control!);
  const workingSet = { start: Math.floor(size / 4), length: Math.max(1, Math.floor(size / 16)) };
  let writes = 0;
  while (Atomics.load(state, 0) === 0) {
    const length = randomInt(1, Math.min(workingSet.length, 64 * 1024) + 1);
    const offset = workingSet.start + randomInt(0, workingSet.length - length + 1);
    randomFillSync(memory, offset, length);
    writes++;
    Atomics.store(state, 1, writes);
    Atomics.notify(state, 1);
    // A breather between writes, as an application has: the pull shares the cores.
    if (writes % 64 === 0) Atomics.wait(state, 0, 0, 1);
  }
  parentPort!.postMessage({ writes });
}
