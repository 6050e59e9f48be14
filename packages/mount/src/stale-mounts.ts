import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { detachLoopDevice, listLoopDevices } from "@r3map/native";
import { mountTable, ownerOf, processExists, unmountLazily } from "./mount-table.js";

/** A stale mount that was cleared, and what went with it. */
export interface ClearedMount {
  mountPoint: string;
  /** The process that made it, gone now. */
  owner: number;
  /** Loop devices over its file that were detached. */
  loopDevices: string[];
  /** Its temporary mount point was removed. */
  removedDirectory: boolean;
}

/**
 * Clears r3map FUSE mounts whose process is gone — left by a process killed
 * when its guardian could not act (killed with it, say): unmounts them
 * lazily, detaches loop devices over their files and removes their
 * temporary mount points. A mount names its process in its source
 * (`r3map@<pid>`), so nothing is stat'ed (a dead or frozen FUSE mount would
 * hang the caller) and no live mount — this process's, another's — is
 * touched. Mounts that do not name their process (made by older versions)
 * are left alone. Resolves with what it cleared.
 */
export async function clearStaleMounts(): Promise<ClearedMount[]> {
  const cleared: ClearedMount[] = [];
  for (const entry of mountTable()) {
    const owner = ownerOf(entry);
    if (owner === undefined || processExists(owner)) continue;
    const inside = `${entry.mountPoint}/`;
    const loopDevices: string[] = [];
    for (const loop of listLoopDevices()) {
      if (!loop.backingFile.startsWith(inside)) continue;
      // Busy (a file system mounted on it): the kernel detaches it once its user lets go.
      await detachLoopDevice(loop.device).catch(() => false);
      loopDevices.push(loop.device);
    }
    try {
      await unmountLazily(entry.mountPoint);
    } catch {
      continue; // someone else cleared it meanwhile
    }
    cleared.push({
      mountPoint: entry.mountPoint,
      owner,
      loopDevices,
      removedDirectory: removeTemporaryMountPoint(entry.mountPoint),
    });
  }
  return cleared;
}

/** Removes a mount point r3map created (`<tmpdir>/r3map-mount-…`, now empty); false for any other. */
function removeTemporaryMountPoint(mountPoint: string): boolean {
  if (path.dirname(mountPoint) !== fs.realpathSync(os.tmpdir())) return false;
  if (!path.basename(mountPoint).startsWith("r3map-mount-")) return false;
  try {
    fs.rmdirSync(mountPoint);
    return true;
  } catch {
    return false;
  }
}
