import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { testRandom, waitFor } from "@r3map/core/testing";
import { isMountPoint } from "@r3map/mount/testing";

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
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
    await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`nbdkit exited with code ${child.exitCode}`);
        return fs.existsSync(pidFile);
      },
      { message: "nbdkit to write its pid file" },
    );
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

/** A file of `size` pseudo-random bytes from the test's seeded source; returns its path. */
export function randomImage(dir: string, size: number, name = "remote.img", random = testRandom()): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, random.bytes(size));
  return file;
}

/**
 * Of `mounts`, closed by now, the ones that still hold a FUSE mount or a loop
 * device (a slice holds neither). Only the test's own: other runs on the
 * machine may hold mounts of their own meanwhile. Read from /proc and sysfs,
 * which never block on a dead FUSE server (findmnt and losetup can).
 */
export function leftoversOf(mounts: Iterable<{ readonly path?: string | undefined }>): string[] {
  const left: string[] = [];
  for (const { path: where } of mounts) {
    if (where === undefined) continue;
    if (where.startsWith("/dev/loop")) {
      const backing = `/sys/block/${path.basename(where)}/loop/backing_file`;
      if (fs.existsSync(backing) && fs.readFileSync(backing, "utf8").includes("r3map-mount-"))
        left.push(where);
    } else if (isMountPoint(path.dirname(where))) {
      left.push(path.dirname(where));
    }
  }
  return left;
}

/**
 * FUSE mounts and loop devices of r3map on the machine that were not in
 * `before` (a `leftovers()` taken earlier): for an open that failed and so
 * left no handle to check.
 */
export function leftoversSince(before: readonly string[]): string[] {
  return leftovers().filter((left) => !before.includes(left));
}

/** Every r3map FUSE mount and loop device on the machine, whoever made it. */
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
