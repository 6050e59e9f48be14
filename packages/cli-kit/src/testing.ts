/**
 * @r3map/cli-kit/testing: run a CLI as a test does — the real binary, its
 * output collected, lines waited for with a deadline, NDJSON events parsed.
 */
import { type ChildProcess, spawn } from "node:child_process";

export interface Ran {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A child process whose output is collected, with a way to wait for what it prints. */
export class Running {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exited: Promise<Ran>;

  constructor(
    command: string,
    args: readonly string[],
    options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
  ) {
    this.child = spawn(command, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: options.env ?? process.env,
      ...(options.cwd ? { cwd: options.cwd } : {}),
    });
    this.child.stdout!.on("data", (data: Buffer) => {
      this.stdout += data;
    });
    this.child.stderr!.on("data", (data: Buffer) => {
      this.stderr += data;
    });
    this.exited = new Promise((resolve) =>
      this.child.once("close", (status, signal) =>
        resolve({ status, signal, stdout: this.stdout, stderr: this.stderr }),
      ),
    );
  }

  /** Polls until `check` holds, failing if the process exits first or the deadline passes. */
  async until(check: (self: Running) => boolean, what: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check(this)) {
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`exited before ${what}: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${this.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** The NDJSON events on stdout so far. */
  events(): Array<Record<string, unknown>> {
    return this.stdout
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  /** SIGTERM (or `signal`), then how it ended. */
  stop(signal: NodeJS.Signals = "SIGTERM"): Promise<Ran> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

/** Runs a command to its end. */
export function run(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<Ran> {
  return new Running(command, args, options).exited;
}
