import { type ChildProcess, execFile, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";

import { freePort } from "../programs.js";

const run = promisify(execFile);

export { freePort };

/**
 * The remote of the mount benchmark: `nbdkit memory` on 127.0.0.1 in its own
 * process, like a real remote, filled from an image file with nbdcopy.
 */
export class NbdkitMemory {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {}

  static async start(scratch: string, size: number): Promise<NbdkitMemory> {
    const port = await freePort();
    // nbdkit writes the pid file once it accepts connections: readiness without probing.
    const pidFile = path.join(scratch, `nbdkit-${port}.pid`);
    const child = spawn(
      "nbdkit",
      [
        "-f",
        "--exit-with-parent",
        "-P",
        pidFile,
        "-i",
        "127.0.0.1",
        "-p",
        String(port),
        "memory",
        `size=${size}`,
      ],
      { stdio: ["ignore", "ignore", "inherit"] },
    );
    const remote = new NbdkitMemory(child, port);
    const deadline = Date.now() + 10_000;
    while (!fs.existsSync(pidFile)) {
      if (child.exitCode !== null || Date.now() > deadline) {
        await remote.kill();
        throw new Error(`nbdkit memory did not start within 10 s (exit code ${child.exitCode})`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return remote;
  }

  /** The export, reached directly or through a proxy listening on `port`. */
  uri(port = this.port): string {
    return `nbd://127.0.0.1:${port}/`;
  }

  async fill(image: string): Promise<void> {
    await run("nbdcopy", [image, this.uri()], { timeout: 60_000 });
  }

  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGKILL");
    await exited;
  }
}

/** Wall time of an `nbdcopy` run, in ms. */
export async function nbdcopyMs(from: string, to: string, timeoutMs = 60_000): Promise<number> {
  const start = performance.now();
  await run("nbdcopy", [from, to], { timeout: timeoutMs });
  return performance.now() - start;
}
