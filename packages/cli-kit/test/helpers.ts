import { type ChildProcess, spawn } from "node:child_process";

export interface Ran {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A child whose output is collected, with a way to wait for a line. */
export class Running {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exited: Promise<Ran>;

  constructor(command: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env) {
    this.child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env });
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
}

export function run(command: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<Ran> {
  return new Running(command, args, env).exited;
}
