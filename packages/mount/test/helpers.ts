import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Polls until a TCP connect to `port` succeeds, or throws at the deadline. */
export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: "127.0.0.1", port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * A remote: nbdkit's file plugin serving an image file on 127.0.0.1, in its own
 * process (as a real remote would be). The image is the remote's state, so a
 * test can check it byte for byte after a mount closes.
 */
export class NbdkitRemote {
  private constructor(
    readonly image: string,
    readonly port: number,
    private process: ChildProcess,
  ) {}

  /** `delayReadMs` adds nbdkit's delay filter (a slow remote, so a pull can be interrupted). */
  static async start(image: string, port?: number, delayReadMs = 0): Promise<NbdkitRemote> {
    const chosen = port ?? (await freePort());
    const delay = delayReadMs > 0 ? ["--filter=delay"] : [];
    const delayArgs = delayReadMs > 0 ? [`delay-read=${delayReadMs}ms`] : [];
    // nbdkit writes its pid file once it accepts connections: readiness without probing the port.
    const pidFile = `${image}.${chosen}.pid`;
    fs.rmSync(pidFile, { force: true });
    const child = spawn(
      "nbdkit",
      [
        "-f",
        "-i",
        "127.0.0.1",
        "-p",
        String(chosen),
        "-P",
        pidFile,
        "--exit-with-parent",
        ...delay,
        "file",
        image,
        ...delayArgs,
      ],
      { stdio: ["ignore", "ignore", "inherit"] },
    );
    const deadline = Date.now() + 10_000;
    while (!fs.existsSync(pidFile)) {
      if (child.exitCode !== null) throw new Error(`nbdkit exited with code ${child.exitCode}`);
      if (Date.now() > deadline) throw new Error("nbdkit did not start within 10 s");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return new NbdkitRemote(image, chosen, child);
  }

  get uri(): string {
    return `nbd://127.0.0.1:${this.port}`;
  }

  /** Kills the server (a crashed or unreachable remote). */
  async kill(): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    const exited = new Promise((resolve) => this.process.once("exit", resolve));
    this.process.kill("SIGKILL");
    await exited;
  }

  /** Stops the server without closing its connections (a remote that stalls); `resume` continues it. */
  pause(): void {
    this.process.kill("SIGSTOP");
  }

  resume(): void {
    this.process.kill("SIGCONT");
  }

  /** Starts it again on the same port. */
  async restart(): Promise<void> {
    await this.kill();
    const again = await NbdkitRemote.start(this.image, this.port);
    this.process = again.process;
  }

  contents(): Buffer {
    return fs.readFileSync(this.image);
  }
}

export function scratchDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "r3map-mount-test-"));
}

/** A file of `size` random bytes; returns its path. */
export function randomImage(dir: string, size: number, name = "remote.img"): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, randomBytes(size));
  return file;
}

/** Runs fio against `file` with a write-then-verify job; throws with fio's output if verification fails. */
export function fioVerify(file: string, size: number, blockSize = "4k"): void {
  execFileSync(
    "fio",
    [
      "--name=verify",
      `--filename=${file}`,
      `--size=${size}`,
      "--rw=randwrite",
      `--bs=${blockSize}`,
      "--ioengine=psync",
      "--direct=1",
      "--verify=crc32c",
      "--verify_fatal=1",
      "--verify_state_save=0",
      "--do_verify=1",
      "--randrepeat=1",
      "--output-format=terse",
    ],
    { stdio: ["ignore", "pipe", "pipe"], timeout: 120_000 },
  );
}

/**
 * What the tests must leave behind: no FUSE mounts of ours and no loop devices
 * over them. Read from /proc and sysfs, which never block on a dead FUSE server
 * (findmnt and losetup can).
 */
export function leftovers(): string[] {
  const mounts = fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((line) => line.includes("fuse.r3map") && line.includes("r3map-mount-"));
  const loops: string[] = [];
  for (const name of fs.readdirSync("/sys/block").filter((n) => n.startsWith("loop"))) {
    try {
      const backing = fs.readFileSync(`/sys/block/${name}/loop/backing_file`, "utf8").trim();
      if (backing.includes("r3map-mount-")) loops.push(`/dev/${name} → ${backing}`);
    } catch {
      // not attached
    }
  }
  return [...mounts, ...loops];
}

/** Reads `length` bytes of `file` at `offset` with plain synchronous calls (as an application would). */
export function readAt(file: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(file, "r");
  try {
    const buffer = Buffer.alloc(length);
    fs.readSync(fd, buffer, 0, length, offset);
    return buffer;
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes `data` into `file` at `offset` with plain synchronous calls. */
export function writeAt(file: string, offset: number, data: Uint8Array): void {
  const fd = fs.openSync(file, "r+");
  try {
    fs.writeSync(fd, data, 0, data.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** Whether `dir` is a mount point now (from /proc, which never blocks on a dead FUSE server). */
export function isMountPoint(dir: string): boolean {
  return fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .some((line) => line.split(" ")[4] === dir);
}

/** Retries `sync()` until it succeeds or the deadline passes (a remote coming back takes a moment). */
export async function syncUntil(mount: { sync(): Promise<void> }, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await mount.sync();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

/**
 * What one test opened — backends, mounts, anything with a cleanup — closed in
 * reverse order by `cleanup()`, which returns this test's mount points that
 * are still mounted (only its own: other packages' tests may run meanwhile).
 */
export class TestScope {
  readonly #cleanups: Array<() => Promise<unknown>> = [];
  readonly #mountPoints: string[] = [];

  /** Registers a cleanup step and returns `value`. */
  add<T>(value: T, cleanup: () => Promise<unknown>): T {
    this.#cleanups.push(cleanup);
    return value;
  }

  /** Registers a file or path mount; asserts it is mounted, so the check after close can fail. */
  mount<T extends { path: string; close(): Promise<void> }>(mount: T): T {
    const point = path.dirname(mount.path);
    if (!isMountPoint(point)) throw new Error(`${point} is not mounted right after mounting`);
    this.#mountPoints.push(point);
    return this.add(mount, () => mount.close());
  }

  async cleanup(): Promise<string[]> {
    for (const step of this.#cleanups.splice(0).reverse()) await step().catch(() => {});
    return this.#mountPoints.splice(0).filter(isMountPoint);
  }
}
