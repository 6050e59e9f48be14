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

/**
 * Touches one byte of `memory` at `offset` on a native thread of its own —
 * the kernel reads it, as a system call would — and resolves once it was
 * readable. For memory whose page faults this thread's event loop answers (a
 * slice warming its miss path at open). A fault that fails rejects with
 * EFAULT instead of raising SIGBUS. Keep `memory` mapped until it settles.
 *
 * ```js
 * await touchOnThread(region.buffer, 0); // the fault is served here meanwhile
 * ```
 */
export async function touchOnThread(memory: Uint8Array, offset: number): Promise<void> {
  try {
    await addon().touchOnThread(memory, offset);
  } catch (error) {
    if (error instanceof RangeError) throw new R3mapError("ERR_OUT_OF_RANGE", error.message);
    throw fromSystemError(error, `cannot read memory at ${offset}`);
  }
}
