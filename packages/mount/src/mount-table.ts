import { execFile } from "node:child_process";
import * as fs from "node:fs";

/**
 * The FUSE mounts of this mount namespace as /proc/self/mountinfo lists
 * them (read from /proc: it never blocks on a dead or frozen FUSE server,
 * as stat, findmnt or losetup can), and who owns r3map's.
 */
export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
}

/** The source an r3map FUSE mount shows: its owner process, so that a stale one can be recognised. */
export function ownerSource(pid = process.pid): string {
  return `r3map@${pid}`;
}

/** The owner process a mount's source names, if it is an r3map mount that says. */
export function ownerOf(entry: MountEntry): number | undefined {
  const match = /^r3map@(\d+)$/.exec(entry.source);
  return entry.fsType.startsWith("fuse.") && match ? Number(match[1]) : undefined;
}

export function mountTable(): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const fields = line.split(" ");
    const separator = fields.indexOf("-");
    if (separator < 0 || fields.length < separator + 3) continue;
    entries.push({
      mountPoint: unescapeMountField(fields[4]!),
      fsType: unescapeMountField(fields[separator + 1]!),
      source: unescapeMountField(fields[separator + 2]!),
    });
  }
  return entries;
}

/** A path as mountinfo spells it: space, tab, newline and backslash as octal escapes. */
export function escapeMountField(text: string): string {
  return text.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`);
}

function unescapeMountField(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/** Whether a process with this id exists (it may be another program that reused the id). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Detaches a mount lazily (umount -l): it leaves the tree at once and goes
 * away when its last user lets go; a dead FUSE mount answers nothing else.
 */
export function unmountLazily(mountPoint: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("umount", ["-l", "--", mountPoint], (error) => (error ? reject(error) : resolve()));
  });
}
