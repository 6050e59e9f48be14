import { rmSync, writeFileSync } from "node:fs";
import { fromSystemError } from "@r3map/core";

/** Writes this process's id to `path` (as nbdkit's --pidfile does, once serving) and returns its remover. */
export function writePidfile(path: string): () => void {
  try {
    writeFileSync(path, `${process.pid}\n`);
  } catch (error) {
    throw fromSystemError(error, `--pidfile: cannot write ${path}`);
  }
  return () => rmSync(path, { force: true });
}
