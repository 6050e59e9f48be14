import * as fs from "node:fs";
import { type Backend, ChunkState, FileBackend, R3mapError } from "@r3map/core";
import { mapSharedFile, syncSharedFile } from "@r3map/native";

/**
 * A managed mount's chunk state kept in a file beside its cache
 * (`managed.state`): the presence, written and pending bitmaps of
 * `ChunkState`, in a shared mapping of the file, so that what the engine and
 * the device's native threads record is in the page cache the moment they
 * record it and survives the process being killed. A restart over the same
 * cache file then reuses every chunk it holds and pushes what was not pushed.
 */
export class CacheStateFile {
  private constructor(
    readonly path: string,
    readonly state: ChunkState,
    readonly buffer: SharedArrayBuffer,
  ) {}

  /** Maps (creating it if needed) the state for `local`, a file cache of `size` bytes in chunks of `chunkSize`. */
  static open(path: string, local: Backend, size: number, chunkSize: number): CacheStateFile {
    if (!(local instanceof FileBackend)) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        "managed.state needs a file cache (managed.local = file:///…): a memory cache does not outlive the process",
      );
    }
    const stat = fs.fstatSync(local.fd);
    const buffer = mapSharedFile(path, ChunkState.byteLength(size, chunkSize), { create: true });
    const state = ChunkState.over(buffer, {
      size,
      chunkSize,
      cache: `${local.path} dev ${stat.dev} inode ${stat.ino}`,
      boot: bootId(),
    });
    // On disk now: a power loss from here on finds the state open (and discards it on the next boot).
    syncSharedFile(buffer);
    return new CacheStateFile(path, state, buffer);
  }

  /** The cache is synced and closed: marks the state clean and writes it to disk. */
  close(): void {
    this.state.markClean();
    syncSharedFile(this.buffer);
  }
}

function bootId(): string {
  try {
    return fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    // Without a boot id every unclean state counts as from another boot: discarded, never trusted wrongly.
    return `unknown-${process.pid}-${Date.now()}`;
  }
}
