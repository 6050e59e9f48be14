import { type ChildProcess, execFile, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as readline from "node:readline";
import { promisify } from "node:util";

const fixtures = path.join(import.meta.dirname, "fixtures");
const run = promisify(execFile);

type Line = Record<string, unknown>;

/** A fixture process speaking JSON lines on stdout; lines can be awaited by a predicate. */
export class FixtureProcess {
  readonly child: ChildProcess;
  readonly #lines: Line[] = [];
  readonly #waiters: Array<{ match: (line: Line) => boolean; resolve: (line: Line) => void }> = [];
  readonly exited: Promise<number | null>;

  constructor(fixture: string, args: string[]) {
    this.child = spawn(process.execPath, [path.join(fixtures, fixture), ...args], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    this.exited = new Promise((resolve) => this.child.once("exit", (code) => resolve(code)));
    readline.createInterface({ input: this.child.stdout! }).on("line", (text) => {
      const line = JSON.parse(text) as Line;
      const index = this.#waiters.findIndex((w) => w.match(line));
      if (index >= 0) this.#waiters.splice(index, 1)[0]!.resolve(line);
      else this.#lines.push(line);
    });
  }

  /** The first line (seen already or still to come) that `match` accepts; fails if the process exits first. */
  line(match: (line: Line) => boolean, timeoutMs = 60_000): Promise<Line> {
    const index = this.#lines.findIndex(match);
    if (index >= 0) return Promise.resolve(this.#lines.splice(index, 1)[0]!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching line within ${timeoutMs} ms`)), timeoutMs);
      this.exited.then((code) => reject(new Error(`the process exited (${code}) before the line came`)));
      this.#waiters.push({
        match,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
    });
  }

  /** The lines seen so far and not yet taken that `match` accepts (taken now). */
  lines(match: (line: Line) => boolean): Line[] {
    const taken = this.#lines.filter(match);
    for (const line of taken) this.#lines.splice(this.#lines.indexOf(line), 1);
    return taken;
  }

  send(text: string): void {
    this.child.stdin!.write(`${text}\n`);
  }

  /** SIGKILL, then waits for the exit. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.exited;
  }
}

/** Detaches a FUSE mount a killed process left (its mount point is the file's directory) and removes the directory. */
export async function unmountLeftover(file: string | undefined): Promise<void> {
  if (!file) return;
  const mountPoint = path.dirname(file);
  await run("umount", ["-l", mountPoint]).catch(() => {});
  await fs.promises.rmdir(mountPoint).catch(() => {});
}
