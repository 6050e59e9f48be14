/**
 * The tapisk CLI in a child process, as a user runs it, and the cleanup of
 * everything such a run and the tests leave in the kernel: ext4 mounts, loop
 * devices and FUSE mounts below a scratch directory — after a SIGKILL too.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import * as fs from "node:fs";
import * as path from "node:path";

const cli = path.join(import.meta.dirname, "..", "dist", "cli.js");

export function requireBuild(): void {
  if (!fs.existsSync(cli)) throw new Error(`${cli} is missing: run pnpm build first`);
}

export interface Started {
  path: string;
  size: number;
  blockSize: number;
}

/** A running tapisk. */
export class TapiskProcess {
  /** Its FUSE connection (/sys/fs/fuse/connections/N), to abort if it cannot exit. */
  connection: string | undefined;

  private constructor(
    readonly child: ChildProcess,
    readonly device: Started,
    readonly output: { stdout: string; stderr: string },
  ) {}

  /** What it printed on stderr so far. */
  get stderr(): string {
    return this.output.stderr;
  }

  /** Starts `tapisk --json …args` and waits (with a deadline) for the device to be ready. */
  static async start(args: string[], timeoutMs = 60_000): Promise<TapiskProcess> {
    const { child, output } = spawnTapisk(["--json", ...args]);
    const deadline = Date.now() + timeoutMs;
    while (!output.stdout.includes("\n")) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `tapisk exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${output.stderr}`,
        );
      }
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new Error(`tapisk was not ready within ${timeoutMs} ms:\n${output.stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const started = new TapiskProcess(child, JSON.parse(output.stdout.split("\n")[0]!) as Started, output);
    const mountPoint = args[args.indexOf("--mount-point") + 1];
    if (mountPoint) started.connection = fuseConnection(mountPoint);
    if (started.connection) connections.set(child, started.connection);
    return started;
  }

  /** Sends `signal` and waits for the exit (with a deadline); resolves with the exit code or signal. */
  async stop(signal: NodeJS.Signals = "SIGINT", timeoutMs = 120_000): Promise<number | string> {
    return stopChild(this.child, signal, timeoutMs, () => this.stderr);
  }
}

/** Runs tapisk to completion (a run that fails at start); resolves with its exit code and stderr. */
export async function runTapisk(
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { child, output } = spawnTapisk(args);
  // The exit event can come before the pipes are drained: wait for both (listening from the start).
  const drained = Promise.all([once(child.stdout!, "close"), once(child.stderr!, "close")]);
  const code = await stopChild(child, undefined, 60_000, () => output.stderr);
  await drained;
  return { code: typeof code === "number" ? code : null, ...output };
}

/** Starts the CLI, collecting what it prints; tracked until it exits, so `killAll` can stop it. */
function spawnTapisk(args: string[]): { child: ChildProcess; output: { stdout: string; stderr: string } } {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  child.once("exit", () => running.delete(child));
  const output = { stdout: "", stderr: "" };
  child.stdout!.on("data", (data) => {
    output.stdout += data;
  });
  child.stderr!.on("data", (data) => {
    output.stderr += data;
  });
  return { child, output };
}

const running = new Set<ChildProcess>();
const connections = new Map<ChildProcess, string>();

/** The FUSE connection of the mount at `mountPoint`: its device minor (from /proc/self/mountinfo). */
function fuseConnection(mountPoint: string): string | undefined {
  const line = fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .find((entry) => entry.split(" ")[4] === path.resolve(mountPoint) && entry.includes(" - fuse"));
  return line?.split(" ")[2]?.split(":")[1];
}

async function stopChild(
  child: ChildProcess,
  signal: NodeJS.Signals | undefined,
  timeoutMs: number,
  stderr: () => string,
): Promise<number | string> {
  const exited = new Promise<number | string>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode ?? child.signalCode!);
    else child.once("exit", (code, sig) => resolve(code ?? sig!));
  });
  if (signal) child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      child.kill("SIGKILL");
      // A process that cannot finish exiting waits on its own FUSE connection: abort it, or it waits forever.
      const connection = connections.get(child);
      if (connection) fs.writeFileSync(`/sys/fs/fuse/connections/${connection}/abort`, "1");
      reject(
        new Error(`tapisk did not exit within ${timeoutMs} ms after ${signal ?? "starting"}:\n${stderr()}`),
      );
    }, timeoutMs);
  });
  try {
    return await Promise.race([exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Kills every tapisk still running (SIGKILL) and waits for them. */
export async function killAll(): Promise<void> {
  await Promise.all(
    [...running].map((child) => stopChild(child, "SIGKILL", 20_000, () => "").catch(() => {})),
  );
}

/** Mount points at or below `dir`, deepest first, FUSE ones or the others (from /proc: never blocks on a dead FUSE server). */
export function mountsUnder(dir: string, kind: "fuse" | "other" | "all" = "all"): string[] {
  return fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((line) => kind === "all" || line.includes(" - fuse") === (kind === "fuse"))
    .map((line) => line.split(" ")[4] ?? "")
    .filter((target) => target === dir || target.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/** Loop devices whose backing file lies below `dir` (from sysfs). */
export function loopsUnder(dir: string): string[] {
  const loops: string[] = [];
  for (const name of fs.readdirSync("/sys/block").filter((n) => n.startsWith("loop"))) {
    try {
      const backing = fs.readFileSync(`/sys/block/${name}/loop/backing_file`, "utf8").trim();
      if (backing.startsWith(`${dir}/`)) loops.push(`/dev/${name}`);
    } catch {
      // not attached
    }
  }
  return loops;
}

/**
 * Removes what the tests made below `dir`: kills tapisk processes, unmounts
 * file systems (lazily: a dead device cannot be flushed), detaches loop
 * devices, unmounts FUSE mounts, and removes the directory.
 */
export async function cleanUp(dir: string): Promise<void> {
  await killAll();
  const run = (command: string, args: string[]) => {
    try {
      execFileSync(command, args, { stdio: "ignore", timeout: 30_000 });
    } catch {}
  };
  // File systems on the devices first, then the loop devices (while their FUSE file still has its path), then FUSE.
  for (const target of mountsUnder(dir, "other")) run("umount", ["-l", target]);
  for (const loop of loopsUnder(dir)) run("losetup", ["-d", loop]);
  for (const target of mountsUnder(dir, "fuse")) run("umount", ["-l", target]);
  fs.rmSync(dir, { recursive: true, force: true });
}
