/**
 * Scratch mount points and leak checks for tests that create kernel objects
 * (FUSE mounts, loop devices): they are global, so every test proves it left
 * none behind.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

export function scratchDirectory(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `r3map-${prefix}-`));
}

/** Mount points at or below `directory`, from /proc/self/mountinfo. */
export function mountsUnder(directory: string): string[] {
  const output = execFileSync("findmnt", ["-rn", "-o", "TARGET"], { encoding: "utf8" });
  return output.split("\n").filter((line) => line === directory || line.startsWith(`${directory}/`));
}

/** Loop devices whose backing file lies below `directory` (per `losetup -a`). */
export function loopDevicesUnder(directory: string): string[] {
  const output = execFileSync("losetup", ["-a", "-n", "-O", "NAME,BACK-FILE", "--raw"], { encoding: "utf8" });
  return output
    .split("\n")
    .filter((line) => line.includes(` ${directory}/`) || line.includes(` ${directory} `))
    .map((line) => line.split(" ")[0] ?? line);
}

/** Best-effort removal of anything left below `directory`, then the directory. */
export function forceCleanup(directory: string): void {
  for (const device of loopDevicesUnder(directory)) {
    try {
      execFileSync("losetup", ["-d", device]);
    } catch {}
  }
  for (const mount of mountsUnder(directory).reverse()) {
    try {
      execFileSync("umount", ["-l", mount]);
    } catch {}
  }
  fs.rmSync(directory, { recursive: true, force: true });
}

export function patternAt(offset: number, length: number, seed = 7): Uint8Array {
  // Depends on the absolute offset, so a misplaced range shows up.
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const position = offset + i;
    bytes[i] = (Math.imul(position >>> 2, 2654435761) ^ seed ^ (position & 3)) >>> 24;
  }
  return bytes;
}
