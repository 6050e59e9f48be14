/**
 * A file's bytes as a `SharedArrayBuffer` (a MAP_SHARED mapping): what
 * JavaScript or native threads store there is in the kernel's page cache of
 * the file at once, so it survives the process being killed (SIGKILL), not a
 * machine crash unless synced. Used for state that must outlive the process,
 * like a managed mount's chunk bitmaps.
 */
import * as fs from "node:fs";
import { R3mapError } from "@r3map/core";
import { addon } from "./addon.js";
import { checkPositiveInteger, mapNativeError } from "./fuse-errors.js";

export interface SharedFileOptions {
  /** Create the file if it is missing (default false). */
  create?: boolean;
}

/**
 * Maps the first `length` bytes of `path` (grown to `length` if shorter; new
 * bytes read as zeros). The mapping is unmapped when the buffer is garbage
 * collected; the file descriptor is closed before this returns.
 */
export function mapSharedFile(
  path: string,
  length: number,
  options: SharedFileOptions = {},
): SharedArrayBuffer {
  checkPositiveInteger(length, "length");
  let fd: number;
  try {
    fd = fs.openSync(path, fs.constants.O_RDWR | (options.create ? fs.constants.O_CREAT : 0), 0o600);
  } catch (error) {
    throw mapNativeError(error, `cannot open ${path}`);
  }
  try {
    if (fs.fstatSync(fd).size < length) fs.ftruncateSync(fd, length);
    return addon().mapSharedFile(fd, length);
  } catch (error) {
    if (error instanceof R3mapError) throw error;
    throw mapNativeError(error, `cannot map ${path}`);
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes a buffer from `mapSharedFile` back to its file and waits (msync). */
export function syncSharedFile(buffer: SharedArrayBuffer): void {
  try {
    addon().msyncShared(buffer);
  } catch (error) {
    throw mapNativeError(error, "msync of a shared file mapping");
  }
}
