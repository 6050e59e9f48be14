import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { testRandom } from "@r3map/core/testing";
import { type FileMount, mountFile, mountSlice } from "@r3map/mount";
import { fioVerify } from "@r3map/mount/testing";
import { afterAll, describe, expect, it } from "vitest";
import { leftovers, leftoversOf, leftoversSince, randomImage, scratchDir } from "./helpers.js";

const size = 32 * 1024 * 1024;
const scratch = scratchDir();
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** Starts the Connect remote in a child process; resolves with its URL. */
async function connectRemote(image: string): Promise<{ url: string; process: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [path.join(import.meta.dirname, "fixtures", "connect-remote.mjs"), image],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (data: Buffer) => {
      out += data;
      if (out.includes("\n")) resolve(out.trim());
    });
    child.once("exit", (code) => reject(new Error(`the Connect remote exited with ${code}`)));
  });
  return { url, process: child };
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

describe("managed mounts over Connect (gRPC on h2c, in another process)", () => {
  it("file: fio verifies; the remote equals the file after close", async () => {
    const image = randomImage(scratch, size, "connect-file.img");
    const remote = await connectRemote(image);
    const mounts: FileMount[] = [];
    try {
      const mount = await mountFile({
        remote: `${remote.url}?token=mount-test&sessions=2`,
        schemes: ["@r3map/transport-connect"],
        chunkSize: 256 * 1024,
        managed: { pull: { workers: 4 }, push: { intervalMs: 200 } },
      });
      mounts.push(mount);
      try {
        fioVerify(mount.path, size);
        const model = fs.readFileSync(mount.path);
        await mount.close();
        expect(Buffer.compare(fs.readFileSync(image), model)).toBe(0);
      } finally {
        await mount.close();
      }
    } finally {
      await stop(remote.process);
    }
    expect(leftoversOf(mounts)).toEqual([]);
  });

  it("slice: the main thread reads and writes; the remote matches after close", async () => {
    const image = randomImage(scratch, size, "connect-slice.img");
    const model = fs.readFileSync(image);
    const remote = await connectRemote(image);
    try {
      const mount = await mountSlice({
        remote: `${remote.url}?token=mount-test`,
        schemes: ["@r3map/transport-connect"],
        chunkSize: 256 * 1024,
        managed: { pull: { workers: 4 } },
      });
      try {
        expect(Buffer.compare(mount.buffer, model)).toBe(0);
        const data = testRandom().bytes(300_000);
        data.copy(mount.buffer, 12345);
        data.copy(model, 12345);
        await mount.close();
        expect(Buffer.compare(fs.readFileSync(image), model)).toBe(0);
      } finally {
        await mount.close();
      }
    } finally {
      await stop(remote.process);
    }
  });

  it("a wrong token fails the open with a typed error and leaves nothing mounted", async () => {
    const image = randomImage(scratch, size, "connect-denied.img");
    const remote = await connectRemote(image);
    const before = leftovers();
    try {
      await expect(
        mountFile({
          remote: `${remote.url}?token=wrong`,
          schemes: ["@r3map/transport-connect"],
          managed: {},
        }),
      ).rejects.toMatchObject({ code: "ERR_PERMISSION" });
    } finally {
      await stop(remote.process);
    }
    expect(leftoversSince(before)).toEqual([]);
  });
});
