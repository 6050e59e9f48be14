import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { type MountDescription, mountFile, mountPath, type PathMount } from "@r3map/mount";
import { openTape } from "./open-tape.js";
import { TapeBackend } from "./tape-backend.js";

export interface TapiskOptions {
  /** A tape device (`/dev/nst0`) or a simulated tape (`sim:/var/tmp/tape.img?…`, see `openTape`). */
  drive: string;
  /** The device's size in bytes. */
  size: number;
  /** The LMDB file mapping blocks to tape positions; keep it with the tape. */
  index: string;
  /** The local cache file. */
  cache: string;
  /** Where the cache's chunk state persists (default: the cache's path + `.state`). */
  state?: string;
  /** A block device (`path`, default) or a file (`file`). */
  as?: "path" | "file";
  /** Background pull workers; 0 reads from tape only what is touched (default 1). */
  pullWorkers?: number;
  /** Concurrent pushes to the tape (default 1). */
  pushWorkers?: number;
  /** Milliseconds between background pushes (default 5 minutes). */
  pushIntervalMs?: number;
  /** Refuse writes (EROFS at the device); the tape is opened read-only. */
  readOnly?: boolean;
  /** An empty directory for the FUSE mount (default: a temporary one). */
  mountPoint?: string;
  /** Milliseconds the head waits to sort concurrent reads into one pass (default 2). */
  gatherMs?: number;
}

export interface Tapisk {
  /** The block device (`/dev/loopN`) or the file. */
  readonly mount: PathMount;
  readonly backend: TapeBackend;
  /** Pushes everything to the tape, detaches the device, closes tape and index. Idempotent. */
  close(): Promise<void>;
}

/**
 * Exposes a tape as a block device or a file: a managed mount whose remote is
 * the tape backend (chunk = the drive's block size) and whose cache file and
 * chunk state survive restarts. The engine runs on this thread: the caller
 * must never read or write the device from it (use another process, or a
 * thread that is not this one).
 */
export async function startTapisk(options: TapiskOptions): Promise<Tapisk> {
  const readOnly = options.readOnly ?? false;
  const tape = await openTape(options.drive, { readOnly });
  const backend = await TapeBackend.open(tape, {
    size: options.size,
    index: options.index,
    ...(options.gatherMs === undefined ? {} : { gatherMs: options.gatherMs }),
  });
  const pullWorkers = options.pullWorkers ?? 1;
  const description: Omit<MountDescription, "remote"> = {
    chunkSize: backend.blockSize,
    managed: {
      local: `${pathToFileURL(path.resolve(options.cache)).href}?create=1&size=${options.size}`,
      state: path.resolve(options.state ?? `${options.cache}.state`),
      pull: pullWorkers > 0 ? { workers: pullWorkers } : false,
      // Nothing changes on a read-only device: nothing to push.
      push: readOnly
        ? false
        : { workers: options.pushWorkers ?? 1, intervalMs: options.pushIntervalMs ?? 5 * 60_000 },
    },
  };
  const deviceOptions = { readOnly, ...(options.mountPoint ? { mountPoint: options.mountPoint } : {}) };
  let mount: PathMount;
  try {
    const source = { ...description, remote: backend };
    mount =
      options.as === "file"
        ? await mountFile(source, { ...deviceOptions, engine: "this-thread" })
        : await mountPath(source, { ...deviceOptions, engine: "this-thread" });
  } catch (error) {
    await backend.close().catch(() => {});
    throw error;
  }
  return { mount, backend, close: () => mount.close() };
}
