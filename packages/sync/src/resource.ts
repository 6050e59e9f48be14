import * as fs from "node:fs";
import {
  type Backend,
  type DigestSource,
  FileBackend,
  fromSystemError,
  MEMORY_SEGMENT_SIZE,
  MemoryBackend,
  R3mapError,
} from "@r3map/core";
import { backendDigester, type DigestTarget, digestChunks } from "@r3map/native";

/**
 * One copy of a resource in a sync: its bytes (a Backend) and how digests of
 * them are computed. `hashesWhereItIs` is true when the digests are computed
 * without moving the bytes — natively here for a local copy, by the server
 * for a remote one — and false when the bytes must be read here to be hashed
 * (a remote that cannot hash: plain NBD, S3, Redis, Cassandra).
 */
export interface SyncSide {
  readonly backend: Backend;
  readonly digests: DigestSource;
  readonly hashesWhereItIs: boolean;
  /** What to call it in messages ("local", the remote's URI). */
  readonly name: string;
}

/** A local copy whose digests native threads compute straight from its file or memory. */
export function localSide(backend: Backend, target: DigestTarget, name = "local"): SyncSide {
  return {
    backend,
    name,
    hashesWhereItIs: true,
    digests: async (request, options = {}) =>
      (await digestChunks(target, backend.size, request, options.signal ? { signal: options.signal } : {}))
        .bytes,
  };
}

/**
 * A remote copy: digests from the server when it computes them
 * (`Backend.digests`, e.g. `r3map serve` over Connect), otherwise read here
 * and hashed natively (`hashesWhereItIs` false).
 */
export function remoteSide(backend: Backend, name = "remote"): SyncSide {
  if (backend.digests)
    return { backend, name, hashesWhereItIs: true, digests: backend.digests.bind(backend) };
  return { backend, name, hashesWhereItIs: false, digests: backendDigester(backend) };
}

export interface OpenLocalOptions {
  /** Open for writing (the target of a pull). */
  writable?: boolean;
  /**
   * A pull with `--resize`: a regular file is truncated or extended to this
   * size first (a block device cannot be, and is refused).
   */
  resizeTo?: number;
  /** Create a missing regular file (of `resizeTo` bytes). */
  create?: boolean;
}

/** A local regular file or block device as a sync side. Close its `backend` when done. */
export function openLocalPath(path: string, options: OpenLocalOptions = {}): SyncSide {
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(path);
  } catch (error) {
    if ((error as { code?: unknown }).code !== "ENOENT" || !options.create) {
      throw fromSystemError(error, `cannot open ${path}`);
    }
  }
  if (stat && !stat.isFile() && !stat.isBlockDevice()) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `${path} is neither a regular file nor a block device`);
  }
  if (options.resizeTo !== undefined) {
    if (stat?.isBlockDevice()) {
      throw new R3mapError(
        "ERR_NOT_SUPPORTED",
        `${path} is a block device, whose size cannot be changed here; give a device of the remote's size`,
      );
    }
    try {
      if (!stat) fs.writeFileSync(path, "");
      fs.truncateSync(path, options.resizeTo);
    } catch (error) {
      throw fromSystemError(error, `cannot resize ${path} to ${options.resizeTo} bytes`);
    }
  }
  const backend = FileBackend.open(path, { readOnly: options.writable !== true });
  return localSide(backend, { fd: backend.fd }, path);
}

/**
 * Memory as a sync side (a Buffer, a userfaultfd region's view): digests are
 * computed from it in place. Closing the backend leaves the memory alone.
 */
export function memorySide(memory: Uint8Array, name = "memory"): SyncSide {
  const segments: Uint8Array[] = [];
  for (let at = 0; at < memory.length; at += MEMORY_SEGMENT_SIZE) {
    segments.push(memory.subarray(at, Math.min(memory.length, at + MEMORY_SEGMENT_SIZE)));
  }
  const backend = MemoryBackend.over(segments);
  return localSide(backend, { memory: segments }, name);
}
