import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/**
 * A tmpfs of a fixed size, mounted on a new temporary directory: a disk that
 * fills up, for tests of what happens then. Needs root. `dispose` unmounts
 * it and removes the directory (lazily, should something still hold it).
 */
export class Tmpfs {
  private constructor(readonly dir: string) {}

  static mount(bytes: number): Tmpfs {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "r3map-tmpfs-"));
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", `size=${bytes},mode=0700`, "tmpfs", dir]);
    } catch (error) {
      fs.rmdirSync(dir);
      throw error;
    }
    return new Tmpfs(dir);
  }

  /** Writes to `name` until the file system is full; returns how many bytes fitted. */
  fill(name = "filler"): number {
    const fd = fs.openSync(path.join(this.dir, name), "w");
    const block = Buffer.alloc(64 * 1024, 0xff);
    let written = 0;
    try {
      for (;;) written += fs.writeSync(fd, block);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
    } finally {
      fs.closeSync(fd);
    }
    return written;
  }

  dispose(): void {
    try {
      execFileSync("umount", [this.dir]);
    } catch {
      execFileSync("umount", ["-l", this.dir]);
    }
    fs.rmdirSync(this.dir);
  }
}
