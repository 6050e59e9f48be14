/**
 * The deadlock rule in practice: a synchronous read of the FUSE file completes
 * when the thread reading is not the thread whose JavaScript serves misses, in
 * both directions, and a mount left by a killed process is cleared.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import * as fs from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FuseFile } from "../src/fuse-file.js";
import { forceCleanup, isRoot, mountsUnder, patternAt, scratchDirectory } from "./helpers.js";

const SIZE = 4 * 1024 * 1024 + 1234; // not a multiple of the page size
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

function requireBuild(): void {
  if (!fs.existsSync(fileURLToPath(new URL("../dist/index.js", import.meta.url)))) {
    throw new Error(
      "packages/native/dist is missing: run `pnpm turbo run build --filter=@r3map/native...` first",
    );
  }
}

function sharedPattern(size: number): Uint8Array {
  const shared = new Uint8Array(new SharedArrayBuffer(size));
  shared.set(patternAt(0, size));
  return shared;
}

describe.skipIf(!isRoot())("FuseFile across threads", () => {
  let dir: string;
  beforeEach(() => {
    dir = scratchDirectory("fuse-threads");
  });
  afterEach(() => {
    const left = mountsUnder(dir);
    forceCleanup(dir);
    expect(left).toEqual([]);
  });

  it("readFileSync on the main thread completes while a worker serves the misses", async () => {
    requireBuild();
    const remote = sharedPattern(SIZE);
    const worker = new Worker(fixture("fuse-engine-worker.mjs"), {
      workerData: { mountPoint: dir, remote: remote.buffer },
    });
    try {
      const [{ path }] = (await once(worker, "message")) as [{ path: string }];
      const bytes = fs.readFileSync(path); // blocks this thread until the worker answers
      expect(bytes.length).toBe(SIZE);
      expect(Buffer.compare(bytes, remote)).toBe(0);
      worker.postMessage("close");
      const [{ calls }] = (await once(worker, "message")) as [{ calls: number }];
      expect(calls).toBeGreaterThan(0);
    } finally {
      await worker.terminate();
    }
  });

  it("a worker's readFileSync completes while the main thread serves the misses", async () => {
    const remote = patternAt(0, SIZE);
    let calls = 0;
    await using file = await FuseFile.mount({
      mountPoint: dir,
      size: SIZE,
      onRead: async (offset, length) => {
        calls++;
        // Answers on a later turn of the event loop, as an engine awaiting the network does (not a wait).
        await new Promise((resolve) => setImmediate(resolve));
        return remote.slice(offset, offset + length);
      },
    });
    const reader = new Worker(
      `const { parentPort, workerData } = require("node:worker_threads");
       parentPort.postMessage(require("node:fs").readFileSync(workerData));`,
      { eval: true, workerData: file.path },
    );
    const [bytes] = (await once(reader, "message")) as [Uint8Array];
    await reader.terminate();
    expect(Buffer.compare(Buffer.from(bytes), remote)).toBe(0);
    expect(calls).toBeGreaterThan(0);
  });

  it("terminating the engine's worker unmounts", async () => {
    requireBuild();
    const worker = new Worker(fixture("fuse-engine-worker.mjs"), {
      workerData: { mountPoint: dir, remote: sharedPattern(SIZE).buffer },
    });
    await once(worker, "message");
    expect(mountsUnder(dir)).toEqual([dir]);
    await worker.terminate();
    expect(mountsUnder(dir)).toEqual([]);
  });

  it("unmounts when the process exits with the file still mounted", async () => {
    requireBuild();
    const child = spawn(process.execPath, [fixture("fuse-mount-child.mjs"), dir, "exit"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const [code] = (await once(child, "exit")) as [number];
    expect(code).toBe(0);
    expect(mountsUnder(dir)).toEqual([]);
  });

  it("clears the stale mount a killed process left behind", async () => {
    requireBuild();
    const child = spawn(process.execPath, [fixture("fuse-mount-child.mjs"), dir], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      // The child either reports the mount or dies (e.g. the package is not built): never wait forever.
      const first = await Promise.race([
        once(child.stdout, "data").then(([line]) => String(line)),
        once(child, "exit").then(([code]) => `exited with ${code}`),
      ]);
      expect(first).toContain("mounted");
    } finally {
      if (child.exitCode === null) {
        child.kill("SIGKILL");
        await once(child, "exit");
      }
    }
    expect(() => fs.statSync(dir)).toThrow(expect.objectContaining({ code: "ENOTCONN" }));

    const remote = patternAt(0, SIZE);
    await using file = await FuseFile.mount({
      mountPoint: dir,
      size: SIZE,
      onRead: async (offset, length) => remote.slice(offset, offset + length),
    });
    expect(mountsUnder(dir)).toEqual([dir]);
    expect(Buffer.compare(await fs.promises.readFile(file.path), remote)).toBe(0);
  });
});
