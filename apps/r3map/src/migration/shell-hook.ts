import { spawn } from "node:child_process";
import { fromSystemError, R3mapError } from "@r3map/core";

/**
 * A hook the user gave as a shell command (`--before-sync 'kill -STOP 1234'`):
 * run with `/bin/sh -c` in a child process — never synchronously, since this
 * thread serves the mount the command may touch — with `env` added to the
 * environment and its output on our stderr (stdout is for `--json` events).
 * Resolves when it exits 0; rejects naming the option otherwise.
 */
export function shellHook(
  option: string,
  command: string | undefined,
  env: () => Record<string, string>,
): (() => Promise<void>) | undefined {
  if (command === undefined) return undefined;
  return () =>
    new Promise<void>((resolve, reject) => {
      const child = spawn("/bin/sh", ["-c", command], {
        stdio: ["ignore", 2, 2],
        env: { ...process.env, ...env() },
      });
      child.once("error", (error) => reject(fromSystemError(error, `${option}: cannot run /bin/sh`)));
      child.once("exit", (code, signal) => {
        if (code === 0) return resolve();
        const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
        reject(new R3mapError("ERR_IO", `${option} "${command}" ${how}`));
      });
    });
}
