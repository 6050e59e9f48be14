import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";

/**
 * A server running in a child process, so that a test can measure its memory
 * the way an operator would (RSS from /proc) and kill or freeze it.
 */
export interface ServerProcess<Info> {
  readonly pid: number;
  /** What the server printed as JSON on its first line of stdout (its address, say). */
  readonly info: Info;
  /** Resident memory now (VmRSS), in bytes. */
  rss(): number;
  /** The highest resident memory since start or the last `resetPeak()` (VmHWM), in bytes. */
  peakRss(): number;
  /** Starts `peakRss()` again from the current RSS. */
  resetPeak(): void;
  /** CPU time it used so far (user + system, all threads), in milliseconds. */
  cpuMs(): number;
  /**
   * Resolves once the server is idle — its CPU time grows by less than
   * `busyMs` in `windowMs` — so that what a test sent it has been taken in
   * (or is held back). Rejects after `timeoutMs`.
   */
  quiet(options?: { windowMs?: number; busyMs?: number; timeoutMs?: number }): Promise<void>;
  /** True while the process runs. */
  alive(): boolean;
  /** What it wrote to stderr so far. */
  stderr(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

/** USER_HZ: what /proc reports CPU times in (100 on every Linux architecture Node runs on). */
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * Starts `node script ...args` and resolves once it printed its first line
 * (JSON) on stdout. The script should exit when its stdin ends: stdin is a
 * pipe from this process, so the server goes with its test even when the
 * test runner is killed.
 */
export async function startServerProcess<Info>(
  script: string,
  args: readonly string[] = [],
  options: { timeoutMs?: number; nodeOptions?: readonly string[] } = {},
): Promise<ServerProcess<Info>> {
  const child = spawn(process.execPath, [...(options.nodeOptions ?? []), script, ...args], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (text: string) => {
    stderr += text;
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const info = await new Promise<Info>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(
      () => fail(new Error(`${script} did not start in time; stderr: ${stderr}`)),
      options.timeoutMs ?? 30_000,
    );
    const fail = (error: Error) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(error);
    };
    const early = (code: number | null, signal: NodeJS.Signals | null) =>
      fail(new Error(`${script} exited (${signal ?? code}) before it was ready; stderr: ${stderr}`));
    child.once("exit", early);
    child.stdout.setEncoding("utf8").on("data", (text: string) => {
      out += text;
      const end = out.indexOf("\n");
      if (end < 0) return;
      clearTimeout(timer);
      child.off("exit", early);
      try {
        resolve(JSON.parse(out.slice(0, end)) as Info);
      } catch (error) {
        fail(new Error(`${script} printed ${out.slice(0, end)} instead of JSON`, { cause: error }));
      }
    });
  });
  const pid = child.pid!;
  const status = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(
      readFileSync(`/proc/${pid}/status`, "utf8"),
    );
    if (!match) throw new Error(`no ${field} in /proc/${pid}/status`);
    return Number(match[1]) * 1024;
  };
  let stopping: Promise<void> | undefined;
  const cpuMs = () => {
    // Fields 14 and 15 of /proc/<pid>/stat, after the parenthesised command name, in clock ticks.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
  };
  return {
    pid,
    info,
    rss: () => status("VmRSS"),
    peakRss: () => status("VmHWM"),
    // "5" resets the peak resident set size (Linux ≥ 4.0, proc(5)).
    resetPeak: () => writeFileSync(`/proc/${pid}/clear_refs`, "5"),
    cpuMs,
    quiet: async ({ windowMs = 500, busyMs = 50, timeoutMs = 60_000 } = {}) => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const before = cpuMs();
        await new Promise((resolve) => setTimeout(resolve, windowMs));
        if (cpuMs() - before < busyMs) return;
      }
      throw new Error(`the server process was still busy after ${timeoutMs} ms`);
    },
    alive: () => child.exitCode === null && child.signalCode === null,
    stderr: () => stderr,
    stop: (graceMs = 5_000) => {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const kill = setTimeout(() => child.kill("SIGKILL"), graceMs);
        child.kill("SIGTERM");
        child.stdin.destroy();
        await exited;
        clearTimeout(kill);
      })();
      return stopping;
    },
  };
}
