import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { testRandom } from "@r3map/core/testing";
import { clearStaleMounts, type Mount, mountFile, mountSlice, recover } from "@r3map/mount";
import { isMountPoint, readAt, TestScope, writeAt } from "@r3map/mount/testing";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { NbdkitRemote, randomImage, scratchDir } from "./helpers.js";

/**
 * Failing peers through the public API, against nbdkit in its own process:
 * a remote that dies under a mount, a close that cannot reach the remote,
 * what is left when a mount's process dies.
 */

const size = 32 * 1024 * 1024;
const chunkSize = 256 * 1024;
const scratch = scratchDir();
const scope = new TestScope();

// Only this test's own mounts: other packages' tests may have theirs meanwhile.
afterEach(async () => {
  expect(await scope.cleanup()).toEqual([]);
});
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe("a managed file mount whose remote dies", () => {
  it("fails reads of missing chunks with EIO in bounded time, keeps writes, and pushes them once the remote returns", async () => {
    // A slow remote (20 ms per read), so the background pull is still running when it dies.
    const image = randomImage(scratch, size);
    const original = fs.readFileSync(image);
    let remote = await NbdkitRemote.start(image, undefined, 20);
    scope.add(remote, () => remote.kill());
    const mount: Mount = scope.mount(
      await mountFile({
        remote: `${remote.uri}?timeout=2000`,
        chunkSize,
        managed: { pull: { workers: 1 }, push: { intervalMs: null } },
      }),
    );
    const errors: unknown[] = [];
    mount.on("error", (error) => errors.push(error));
    const file = mount.path!;

    expect(Buffer.compare(readAt(file, 0, 4096), original.subarray(0, 4096))).toBe(0);
    await remote.kill();

    // The middle chunk: the pull (one worker, 20 ms a chunk) has not reached it; open primed the last one.
    const missing = Math.floor(size / chunkSize / 2) * chunkSize;
    const started = Date.now();
    expect(() => readAt(file, missing, 4096)).toThrow(expect.objectContaining({ code: "EIO" }));
    expect(Date.now() - started).toBeLessThan(15_000);

    // Chunk 0 is local: a write to it succeeds while the remote is away, but cannot be pushed yet.
    const update = Buffer.alloc(1000, 0x5a);
    writeAt(file, 100, update);
    await expect(mount.sync()).rejects.toMatchObject({ code: "ERR_REMOTE_FAILED" });
    expect((await mount.progress())?.dirtyChunks).toBeGreaterThan(0);

    remote = await NbdkitRemote.start(image, remote.port);
    await mount.sync();
    const expected = Buffer.from(original);
    update.copy(expected, 100);
    expect(
      Buffer.compare(fs.readFileSync(image).subarray(0, chunkSize), expected.subarray(0, chunkSize)),
    ).toBe(0);
    // Reads of chunks never fetched work again, and the engine stayed healthy.
    expect(Buffer.compare(readAt(file, missing, 4096), original.subarray(missing, missing + 4096))).toBe(0);
    expect(errors.length).toBeGreaterThan(0); // the pull reported the outage
    await mount.close();
    expect(Buffer.compare(fs.readFileSync(image).subarray(100, 1100), update)).toBe(0);
  });
});

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

/** nbdkit serving a random image (killed at the end), and a managed description of it that pushes only on close. */
async function remoteImage(name: string) {
  const image = randomImage(scratch, size, name);
  const remote: NbdkitRemote = scope.add(await NbdkitRemote.start(image), () => remote.kill());
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
    writeAt(mount.path, 5 * chunkSize, testRandom().bytes(chunkSize));
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
    const update = testRandom().bytes(3 * chunkSize);
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
    const update = testRandom().bytes(chunkSize);
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
