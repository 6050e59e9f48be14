import { fromSystemError, R3mapError } from "@r3map/core";
import { addon } from "./addon.js";

/**
 * Reads `length` bytes at `offset` of a file with O_DIRECT on a native thread
 * of its own, and resolves with the count read (the bytes are dropped). For a
 * read the calling thread must not make itself: a FUSE file whose misses this
 * thread's event loop answers — a mount warming its miss path at open, say.
 * Never the libuv threadpool. Offset and length: multiples of 4096.
 *
 * ```js
 * await readOnThread(mount.path, 0, 4096); // this thread stays free to serve the miss
 * ```
 */
export async function readOnThread(path: string, offset: number, length: number): Promise<number> {
  try {
    return await addon().readOnThread(path, offset, length);
  } catch (error) {
    if (error instanceof RangeError) throw new R3mapError("ERR_MISALIGNED", error.message);
    throw fromSystemError(error, `cannot read ${path} at ${offset}`);
  }
}
