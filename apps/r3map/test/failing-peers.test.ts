import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import type { Running } from "@r3map/cli-kit/testing";
import { Tmpfs, testRandom } from "@r3map/core/testing";
import { clearStaleMounts } from "@r3map/mount";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { firstLine, r3map, scratch } from "./support.js";

/**
 * Failing peers, through the real CLI against real server processes: a
 * server killed while a mount closes, a server frozen (SIGSTOP), a mount
 * killed (kill -9), a disk filling up under a directory backend. Each test
 * checks only its own mounts and loop devices (others' tests run meanwhile)
 * and undoes what it did on failure too: stopped servers are resumed before
 * they are killed.
 */

const MiB = 1024 * 1024;
/** Recovery files of mounts that a failed test leaves closing: here, not in the user's state directory. */
const saved = scratch("r3map-peers-saved-");
afterAll(() => saved.remove());
const servers = new Set<Running>();
const mounts = new Set<Running>();
const undo: Array<() => unknown> = [];

afterEach(async () => {
  // Servers resumed first, so that mounts can close; a mount still retrying is hurried by a second signal.
  for (const server of servers) server.child.kill("SIGCONT");
  await Promise.all([...mounts].map((running) => stop(running)));
  await Promise.all([...servers].map((server) => kill(server)));
  mounts.clear();
  servers.clear();
  for (const step of undo.splice(0).reverse()) {
    try {
      await step();
    } catch {
      // the next step still runs
    }
  }
  // A mount still retrying is given 10 s, then a second signal, then 10 s more.
}, 60_000);

/** SIGTERM; a second one after 10 s, SIGKILL after 20 s. */
async function stop(running: Running): Promise<void> {
  if (running.child.exitCode !== null || running.child.signalCode !== null) return;
  const again = setTimeout(() => running.child.kill("SIGTERM"), 10_000);
  const killer = setTimeout(() => running.child.kill("SIGKILL"), 20_000);
  await running.stop();
  clearTimeout(again);
  clearTimeout(killer);
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** `r3map serve` of a backend on a fixed port (so that it can be started again there), killed at the end. */
async function serve(backend: string, port: number): Promise<Running> {
  const server = r3map(["serve", backend, "--nbd", `127.0.0.1:${port}`, "--print-uri"]);
  servers.add(server);
  await firstLine(server);
  return server;
}

/** SIGKILL (a SIGCONT first, should it be stopped), and the end of the process. */
async function kill(running: Running): Promise<void> {
  if (running.child.exitCode !== null || running.child.signalCode !== null) return;
  running.child.kill("SIGCONT");
  running.child.kill("SIGKILL");
  await running.exited;
}

/** `r3map mount ARGS --json` and the path its start event names. */
async function mount(args: string[]): Promise<{ running: Running; path: string }> {
  const defaults = args.includes("--recovery-file")
    ? []
    : ["--recovery-file", path.join(saved.dir, `${mounts.size}-${Date.now()}.r3rec`)];
  const running = r3map(["mount", ...args, ...defaults, "--json"]);
  mounts.add(running);
  await running.until((r) => r.events().some((e) => e.event === "start"), "the mount's start event", 60_000);
  const mounted = String(running.events().find((e) => e.event === "start")!.path);
  return { running, path: mounted };
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

function writeAt(file: string, offset: number, data: Uint8Array): void {
  const fd = fs.openSync(file, "r+");
  try {
    fs.writeSync(fd, data, 0, data.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** A remote image file with random contents, and what a mount writes into it: 4 MiB at 3 MiB. */
function imageAndUpdate(dir: string): { image: string; expected: Buffer; update: Buffer; at: number } {
  const image = path.join(dir, "remote.img");
  const random = testRandom();
  const original = random.bytes(32 * MiB);
  fs.writeFileSync(image, original);
  const update = random.bytes(4 * MiB);
  const at = 3 * MiB;
  const expected = Buffer.from(original);
  update.copy(expected, at);
  return { image, expected, update, at };
}

async function until(check: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * A managed mount of a server's image (`r3map serve file://…`), 4 MiB written to it, the server killed,
 * and the mount told to close (SIGTERM): its push cannot succeed.
 */
async function closingWithServerDown() {
  const dir = scratch("r3map-peers-");
  undo.push(() => dir.remove());
  const { image, expected, update, at } = imageAndUpdate(dir.dir);
  const port = await freePort();
  const server = await serve(`file://${image}`, port);
  const recoveryFile = path.join(dir.dir, "unpushed.r3rec");
  const { running, path: file } = await mount([
    `nbd://127.0.0.1:${port}/default`,
    "--managed",
    "--chunk-size",
    "256KiB",
    "--push-interval",
    "0",
    "--timeout",
    "2s",
    "--recovery-file",
    recoveryFile,
  ]);
  writeAt(file, at, update);
  await kill(server);
  running.child.kill("SIGTERM");
  return { image, expected, port, recoveryFile, running };
}

describe("a managed mount closed while its server is down (1)", () => {
  it("retries the push, saying what is unpushed, and pushes everything once the server returns", async () => {
    const { image, expected, port, recoveryFile, running } = await closingWithServerDown();
    const retrying = (r: Running) => r.events().filter((e) => e.event === "warning" && e.unpushedChunks);
    await running.until((r) => retrying(r).length >= 2, "two retries", 60_000);
    const warning = retrying(running)[0]!;
    // 4 MiB at 3 MiB in 256 KiB chunks: 16 chunks, saved at once in case this process dies while it waits.
    expect(warning).toMatchObject({ unpushedChunks: 16, unpushedBytes: 4 * MiB, recoveryFile });
    expect(fs.existsSync(recoveryFile)).toBe(true);
    expect(running.stderr).toMatch(/the remote did not take 16 chunk\(s\) \(4\.00 MiB\)/);

    const server = await serve(`file://${image}`, port);
    const result = await running.exited;
    expect(result.status, result.stderr).toBe(0);
    expect(running.events().at(-1)).toMatchObject({ event: "done", exitStatus: 0, pushed: true });
    // Pushed and synced: the saved copy is gone.
    expect(fs.existsSync(recoveryFile)).toBe(false);
    await kill(server);
    expect(sha256(fs.readFileSync(image))).toBe(sha256(expected));
  });

  it("stops retrying at a second signal, keeps the recovery file, and `r3map recover` pushes it later", async () => {
    const { image, expected, port, recoveryFile, running } = await closingWithServerDown();
    await running.until(
      (r) => r.events().some((e) => e.event === "warning" && e.unpushedChunks),
      "a retry",
      60_000,
    );
    running.child.kill("SIGTERM");
    const result = await running.exited;
    expect(result.status, result.stderr).toBe(8);
    expect(running.events().at(-1)).toMatchObject({
      event: "done",
      exitStatus: 8,
      pushed: false,
      recoveryFile,
      unpushedChunks: 16,
      unpushedBytes: 4 * MiB,
    });
    expect(result.stderr).toContain(
      `saved in ${recoveryFile}: push them with \`r3map recover ${recoveryFile}\``,
    );
    // Nothing reached the remote.
    expect(sha256(fs.readFileSync(image))).not.toBe(sha256(expected));

    const again = await serve(`file://${image}`, port);
    const recovering = r3map(["recover", recoveryFile, "--json"]);
    const recovered = await recovering.exited;
    expect(recovered.status, recovered.stderr).toBe(0);
    expect(recovering.events().at(-1)).toMatchObject({
      event: "done",
      chunks: 16,
      bytes: 4 * MiB,
      removed: true,
    });
    expect(fs.existsSync(recoveryFile)).toBe(false);
    await kill(again);
    expect(sha256(fs.readFileSync(image))).toBe(sha256(expected));
  });
});

describe("a frozen server (2)", () => {
  const timeoutMs = 2000;

  it("fails an unpulled read with EIO and answers fsync within --timeout + 2 s, managed and direct", async () => {
    const port = await freePort();
    const server = await serve("memory:?size=64MiB", port);
    const remote = `nbd://127.0.0.1:${port}/default`;
    // Managed without a background pull: a read of a chunk nobody touched must ask the server. Each
    // check has a mount of its own: a mount whose remote just timed out fails the next request at once.
    const managed = ["--managed", "--pull-workers", "0", "--push-interval", "0", "--timeout", "2s"];
    const writer = await mount([remote, ...managed]);
    const reader = await mount([remote, ...managed]);
    const direct = await mount([remote, "--timeout", "2s"]);
    writeAt(writer.path, 0, testRandom().bytes(MiB));

    server.child.kill("SIGSTOP");
    const bound = timeoutMs + 2000;
    const timed = async (what: string, work: () => Promise<unknown>) => {
      const started = performance.now();
      const outcome = await work().catch((error: unknown) => error);
      const elapsed = performance.now() - started;
      expect(outcome, what).toMatchObject({ code: "EIO" });
      expect(elapsed, what).toBeLessThan(bound);
    };
    await timed("fsync of the managed mount", async () => {
      const handle = await fs.promises.open(writer.path, "r+");
      await handle.sync().finally(() => handle.close());
    });
    for (const [what, file] of [
      ["unpulled read of the managed mount", reader.path],
      ["read of the direct mount", direct.path],
    ] as const) {
      await timed(what, async () => {
        const handle = await fs.promises.open(file, "r");
        await handle.read(Buffer.alloc(4096), 0, 4096, 40 * MiB).finally(() => handle.close());
      });
    }
    server.child.kill("SIGCONT");
  });
});

/** This test's FUSE mount point is still mounted, a loop device is still over its file, or its directory is left. */
function leftBehind(mountPoint: string): string[] {
  const left: string[] = [];
  const mounted = fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .some((line) => line.split(" ")[4] === mountPoint);
  if (mounted) left.push(`FUSE mount at ${mountPoint}`);
  for (const name of fs.readdirSync("/sys/block").filter((n) => n.startsWith("loop"))) {
    try {
      const backing = fs.readFileSync(`/sys/block/${name}/loop/backing_file`, "utf8").trim();
      if (backing.startsWith(`${mountPoint}/`)) left.push(`/dev/${name} over ${backing}`);
    } catch {
      // not attached
    }
  }
  if (fs.existsSync(mountPoint)) left.push(`directory ${mountPoint}`);
  return left;
}

describe("a mount killed with kill -9 (3)", () => {
  it.each(["file", "path"])(
    "leaves no FUSE mount, loop device or directory behind within 5 s (--as %s)",
    async (as) => {
      const port = await freePort();
      await serve("memory:?size=16MiB", port);
      const { running, path: device } = await mount([
        `nbd://127.0.0.1:${port}/default`,
        "--managed",
        "--as",
        as,
      ]);
      const file =
        as === "path"
          ? fs.readFileSync(`/sys/block/${path.basename(device)}/loop/backing_file`, "utf8").trim()
          : device;
      const mountPoint = path.dirname(file);
      expect(leftBehind(mountPoint).length).toBeGreaterThan(0);
      // Should the guardian fail, what it left is cleared after the test (only mounts whose process is gone).
      undo.push(() => clearStaleMounts());
      running.child.kill("SIGKILL");
      await running.exited;
      await until(() => leftBehind(mountPoint).length === 0, `nothing left at ${mountPoint}`, 5000).catch(
        (error: Error) => {
          throw new Error(`${error.message}: ${leftBehind(mountPoint).join("; ")}`);
        },
      );
    },
  );
});

describe("a directory backend whose disk fills up mid-write (4)", () => {
  it("gives the writer ENOSPC and keeps every chunk's old or new bytes, never zeros", async () => {
    const disk = Tmpfs.mount(64 * MiB);
    undo.push(() => disk.dispose());
    const port = await freePort();
    // The export (128 MiB) is larger than the disk under it.
    const server = await serve(`dir://${disk.dir}/chunks?size=128MiB&chunk=1MiB`, port);
    const { running, path: file } = await mount([`nbd://127.0.0.1:${port}/default`, "--chunk-size", "1MiB"]);
    const chunks = 128;
    const oldChunks = 40;
    const bytes = (pattern: number, chunk: number) => Buffer.alloc(MiB, (pattern * 31 + chunk) % 251);
    const fd = fs.openSync(file, "r+");
    try {
      for (let chunk = 0; chunk < oldChunks; chunk++) fs.writeSync(fd, bytes(1, chunk), 0, MiB, chunk * MiB);
      // New bytes over every chunk: those beyond the old ones need new space, which runs out.
      let failure: unknown;
      let acknowledged = 0;
      for (let chunk = 0; chunk < chunks; chunk++) {
        try {
          expect(fs.writeSync(fd, bytes(2, chunk), 0, MiB, chunk * MiB)).toBe(MiB);
          acknowledged++;
        } catch (error) {
          failure = error;
          break;
        }
      }
      expect(failure, "the disk never filled").toMatchObject({ code: "ENOSPC" });
      expect(acknowledged).toBeGreaterThan(oldChunks);
      const back = Buffer.alloc(MiB);
      for (let chunk = 0; chunk < chunks; chunk++) {
        fs.readSync(fd, back, 0, MiB, chunk * MiB);
        const fresh = bytes(2, chunk);
        const old = chunk < oldChunks ? bytes(1, chunk) : Buffer.alloc(MiB);
        if (chunk < acknowledged)
          expect(back.equals(fresh), `chunk ${chunk} holds its acknowledged bytes`).toBe(true);
        else expect(back.equals(old), `chunk ${chunk} holds its old bytes`).toBe(true);
      }
    } finally {
      fs.closeSync(fd);
    }
    expect((await running.stop()).status).toBe(0);

    // A managed mount takes the write into its cache; its fsync, which pushes, hears ENOSPC too (not EIO).
    const managed = await mount([
      `nbd://127.0.0.1:${port}/default`,
      "--managed",
      "--pull-workers",
      "0",
      "--push-interval",
      "0",
    ]);
    const handle = await fs.promises.open(managed.path, "r+");
    try {
      await handle.write(bytes(3, chunks - 1), 0, MiB, (chunks - 1) * MiB);
      await expect(handle.sync()).rejects.toMatchObject({ code: "ENOSPC" });
    } finally {
      await handle.close();
    }
    // Its close cannot push either: it keeps the write in its recovery file, at the second signal.
    managed.running.child.kill("SIGTERM");
    await managed.running.until((r) => r.stderr.includes("the remote did not take"), "a retry", 60_000);
    expect((await managed.running.stop()).status).toBe(8);
    await kill(server);
  });
});
