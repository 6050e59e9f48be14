import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { type FileMount, type MountDescription, mountFile } from "@r3map/mount";

/**
 * File mounts of one benchmark run, all under a directory of the run's
 * scratch space, so that whatever a failed close leaves mounted can be found,
 * unmounted, and reported.
 */
export class ScratchMounts {
  readonly root: string;
  #count = 0;

  constructor(scratch: string) {
    this.root = fs.mkdtempSync(path.join(scratch, "mounts-"));
  }

  mountFile(description: MountDescription): Promise<FileMount> {
    return mountFile(description, { mountPoint: this.mountPoint() });
  }

  /** A fresh empty directory under the root, for a mount made some other way (a migration's leecher). */
  mountPoint(): string {
    const mountPoint = path.join(this.root, `m${this.#count++}`);
    fs.mkdirSync(mountPoint);
    return mountPoint;
  }

  /** Lazily unmounts what is still mounted here; throws naming them if there were any. */
  checkNoneLeft(): void {
    const left = fs
      .readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((line) => line.split(" ")[4])
      .filter((point): point is string => point?.startsWith(`${this.root}/`) ?? false);
    for (const point of left) execFileSync("umount", ["-l", point]);
    if (left.length > 0) throw new Error(`mounts were left behind (now unmounted): ${left.join(", ")}`);
  }
}
