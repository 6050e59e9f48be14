import { type Backend, MemoryBackend } from "@r3map/core";
import { addon } from "./addon.js";

/** Memory being faulted in on a native thread; see `populateInBackground`. */
export interface Population {
  /** Bytes populated, once every range is done or `stop()` took effect. */
  readonly done: Promise<number>;
  /** Stops after the current step (a few MiB); the memory stays valid and usable. */
  stop(): void;
}

/**
 * Faults `ranges` in, one after the other, on a native thread, ahead of their
 * first use (MADV_POPULATE_WRITE: no byte changes, so the memory can be
 * written meanwhile). For a cache that is about to be filled at gigabytes per
 * second, this takes the page faults off the thread that receives the data.
 * `hugePages` first advises transparent huge pages for the ranges: far fewer
 * faults, each assembled here instead of on a reader's miss.
 *
 * ```js
 * const cache = new Uint8Array(new SharedArrayBuffer(256 * 1024 * 1024));
 * const population = populateInBackground([cache]);
 * // … fill `cache` while it runs …
 * population.stop();
 * await population.done;
 * ```
 */
export function populateInBackground(
  ranges: readonly Uint8Array[],
  options: { hugePages?: boolean } = {},
): Population {
  const cancel = new Int32Array(new SharedArrayBuffer(4));
  const done = (async () => {
    let total = 0;
    for (const range of ranges) {
      if (Atomics.load(cancel, 0) !== 0) break;
      total += await addon().populateMemory(range, cancel, options.hugePages ?? false);
    }
    return total;
  })();
  return { done, stop: () => Atomics.store(cancel, 0, 1) };
}

/**
 * Keeps `ranges` out of child processes (MADV_DONTFORK on their whole pages).
 * Every `child_process` spawn forks, and a fork marks all private memory
 * copy-on-write in this process too: the next write to each 4 KiB page of a
 * cache then takes a fault. A spawned child execs at once and never needs
 * this memory. Returns false where the kernel refused.
 *
 * ```js
 * const cache = new MemoryBackend(1 << 30);
 * for (const segment of cache.segments) keepFromChildren(segment);
 * ```
 */
export function keepFromChildren(range: Uint8Array): boolean {
  return addon().keepFromChildren(range);
}

/** `keepFromChildren` for every segment of a memory backend (any other backend holds no memory of ours). */
export function keepBackendFromChildren(backend: Backend): void {
  if (backend instanceof MemoryBackend) for (const segment of backend.segments) keepFromChildren(segment);
}
