import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { clearStaleMounts, type Mount, mountFile, mountSlice, recover } from "../dist/index.js";
import { isMountPoint, NbdkitRemote, randomImage, scratchDir, TestScope, writeAt } from "./helpers.js";

/**
 * What a close does when the remote cannot take the mount's writes, and what
 * is left when a mount's process dies — through the public API, against
 * nbdkit in its own process.
 */

const size = 16 * 1024 * 1024;
const chunkSize = 256 * 1024;
const scratch = scratchDir();
let scope = new TestScope();

afterEach(async () => {
  const left = await scope.cleanup();
  scope = new TestScope();
  expect(left).toEqual([]);
});
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

/** nbdkit serving a random image (killed at the end), and a managed description of it that pushes only on close. */
async function remoteImage(name: string) {
  const image = randomImage(scratch, size, name);
  const remote = scope.add(await NbdkitRemote.start(image), () => remote.kill());
  const description = {
    remote: remote.uri,
    chunkSize,
    timeoutMs: 2000,
    managed: { pull: { workers: 4 }, push: { intervalMs: null } },
  };
  return { image, remote, description, original: fs.readFileSync(image) };
}

/** Processes whose command line names `text` (a guardian names its mount point). */
function processesNaming(text: string): number[] {
  const found: number[] = [];
  for (const pid of fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      if (fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(text)) found.push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("closing a managed mount whose remote is down", () => {
  it("rejects with ERR_DATA_LOST, saying so, when neither a retry nor a recovery file was asked for", async () => {
    const { remote, description } = await remoteImage("lost.img");
    const mount = scope.mount(await mountFile(description));
    writeAt(mount.path, 5 * chunkSize, randomBytes(chunkSize));
    await remote.kill();
    const failure = await mount.close().catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: "ERR_DATA_LOST" });
    expect((failure as Error).message).toMatch(
      /1 chunk\(s\) \(256 KiB\) written to the mount could not be pushed .* are lost/,
    );
    expect(isMountPoint(path.dirname(mount.path))).toBe(false);
  });

  it("saves a file mount's unpushed writes to a recovery file, which recover pushes once the remote is back", async () => {
    const { image, remote, description, original } = await remoteImage("saved.img");
    const mount = scope.mount(await mountFile(description));
    const update = randomBytes(3 * chunkSize);
    writeAt(mount.path, chunkSize + 100, update);
    await remote.kill();
    const file = path.join(scratch, "file-mount.r3rec");
    const result = await mount.close({ recoveryFile: file });
    // chunkSize + 100 … 4·chunkSize + 100: four chunks.
    expect(result).toEqual({ pushed: false, recoveryFile: file, chunks: 4, bytes: 4 * chunkSize });
    expect(sha256(fs.readFileSync(image))).toBe(sha256(original));

    await remote.restart();
    await recover(file);
    expect(fs.existsSync(file)).toBe(false);
    const expected = Buffer.from(original);
    update.copy(expected, chunkSize + 100);
    expect(sha256(fs.readFileSync(image))).toBe(sha256(expected));
  });

  it("saves a slice's written pages too (found by scanning its memory before it is unmapped)", async () => {
    const { image, remote, description, original } = await remoteImage("slice.img");
    const mount: Mount = scope.add(await mountSlice(description), () => mount.close());
    // Pull everything first: the slice's pages are then the only copy.
    await until(() => mount.buffer.equals(original), "the slice to hold the remote's bytes", 60_000);
    mount.buffer.fill(0x5a, 7 * chunkSize, 7 * chunkSize + 10);
    mount.buffer.fill(0xa5, 12 * chunkSize + 4096, 12 * chunkSize + 8192);
    await remote.kill();
    const file = path.join(scratch, "slice.r3rec");
    expect(await mount.close({ recoveryFile: file })).toMatchObject({ pushed: false, chunks: 2 });

    await remote.restart();
    await recover(file);
    const expected = Buffer.from(original);
    expected.fill(0x5a, 7 * chunkSize, 7 * chunkSize + 10);
    expected.fill(0xa5, 12 * chunkSize + 4096, 12 * chunkSize + 8192);
    expect(sha256(fs.readFileSync(image))).toBe(sha256(expected));
  });

  it("keeps retrying until the remote returns, then removes the recovery file it wrote meanwhile", async () => {
    const { image, remote, description, original } = await remoteImage("retried.img");
    const mount = scope.mount(await mountFile(description));
    const update = randomBytes(chunkSize);
    writeAt(mount.path, 0, update);
    await remote.kill();
    const file = path.join(scratch, "retried.r3rec");
    const stop = new AbortController();
    scope.add(stop, async () => stop.abort());
    const retries: unknown[] = [];
    const closing = mount.close({
      retryUntil: stop.signal,
      recoveryFile: file,
      onRetry: (s) => retries.push(s),
    });
    await until(() => retries.length >= 2, "two retries", 30_000);
    expect(retries[0]).toMatchObject({
      attempt: 1,
      unpushedChunks: 1,
      unpushedBytes: chunkSize,
      recoveryFile: file,
    });
    expect(fs.existsSync(file)).toBe(true);
    await remote.restart();
    expect(await closing).toEqual({ pushed: true });
    expect(fs.existsSync(file)).toBe(false);
    const expected = Buffer.from(original);
    update.copy(expected, 0);
    expect(sha256(fs.readFileSync(image))).toBe(sha256(expected));
  });
});

describe("guardians and stale mounts", () => {
  it("a clean close lets the mount's guardian go at once", async () => {
    const mount = await mountFile({ remote: `memory:?size=${size}` });
    const mountPoint = path.dirname(mount.path);
    expect(processesNaming(mountPoint).length).toBe(1);
    await mount.close();
    await until(() => processesNaming(mountPoint).length === 0, "the guardian to exit");
    expect(fs.existsSync(mountPoint)).toBe(false);
  });

  it("clearStaleMounts clears a mount whose process and guardian were killed, and no live one", async () => {
    const live = scope.mount(await mountFile({ remote: `memory:?size=${size}` }));
    const script = `
      import { mountFile } from ${JSON.stringify(path.join(import.meta.dirname, "..", "dist", "index.js"))};
      const mount = await mountFile({ remote: "memory:?size=${size}" });
      console.log(mount.path);
      setInterval(() => {}, 1000);`;
    const program = path.join(scratch, "mount-and-wait.mjs");
    fs.writeFileSync(program, script);
    const child = spawn(process.execPath, [program], { stdio: ["ignore", "pipe", "inherit"] });
    scope.add(child, async () => child.kill("SIGKILL"));
    const file = await new Promise<string>((resolve, reject) => {
      child.stdout.once("data", (data: Buffer) => resolve(data.toString().trim()));
      child.once("exit", (code) => reject(new Error(`the mounting process exited with ${code}`)));
    });
    const mountPoint = path.dirname(file);
    // Should this test fail, whatever is left is cleared here.
    scope.add(mountPoint, () => clearStaleMounts());
    for (const guardian of processesNaming(mountPoint)) process.kill(guardian, "SIGKILL");
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    expect(isMountPoint(mountPoint)).toBe(true);

    const cleared = await clearStaleMounts();
    expect(cleared).toEqual([{ mountPoint, owner: child.pid, loopDevices: [], removedDirectory: true }]);
    expect(isMountPoint(mountPoint)).toBe(false);
    expect(fs.existsSync(mountPoint)).toBe(false);
    expect(isMountPoint(path.dirname(live.path))).toBe(true);
  });
});
