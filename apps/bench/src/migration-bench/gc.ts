import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/**
 * A full garbage collection, between two measurements. A closed mount's
 * memory cache (1 GiB here) is returned to the system only when V8 collects
 * its buffers; with two or three such stale caches around, the next mount's
 * pull ran 2–4× slower (measured: 1.0 s fresh, 2.3–4.1 s after others; about
 * 0.9 s with a collection in between). Each run should start as a fresh
 * process would; nbdcopy, the baseline, always does. Each thread collects
 * its own heap: the seeder thread calls it too.
 */
export function collectGarbage(): void {
  setFlagsFromString("--expose-gc");
  (runInNewContext("gc") as () => void)();
}
