import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { testRandom } from "@r3map/core/testing";
import { afterEach, describe, expect, it } from "vitest";

const cli = path.join(import.meta.dirname, "..", "dist", "cli.js");
const children: ChildProcess[] = [];

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
});

/** Starts the CLI and resolves with its child process and the first JSON line it prints. */
async function start(
  args: string[],
): Promise<{ child: ChildProcess; info: Record<string, unknown>; stderr: () => string }> {
  const child = spawn(process.execPath, [cli, ...args, "--json"], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let stderr = "";
  child.stderr!.on("data", (data: Buffer) => {
    stderr += data;
  });
  const info = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (data: Buffer) => {
      out += data;
      if (out.includes("\n")) resolve(JSON.parse(out.split("\n")[0]!));
    });
    child.once("exit", (code) => reject(new Error(`r3map ${args[0]} exited with ${code}: ${stderr}`)));
  });
  return { child, info, stderr: () => stderr };
}

/** SIGTERM, then how the process ended: its exit code, or the signal that killed it. */
async function stop(child: ChildProcess): Promise<number | string> {
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? `killed by ${signal}`)),
  );
  child.kill("SIGTERM");
  return exited;
}

function mountedFuse(): string[] {
  return fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((line) => line.includes("fuse.r3map") && line.includes("r3map-mount-"));
}

describe("r3map serve and r3map mount", () => {
  it("serves memory over NBD, mounts it managed, pushes the writes on SIGTERM, and a direct mount sees them", async () => {
    const server = await start(["serve", "memory:?size=32MiB", "--nbd", "127.0.0.1:0"]);
    const remote = String(server.info.nbd);
    expect(remote).toMatch(/^nbd:\/\/127\.0\.0\.1:\d+\/default$/);

    const managed = await start([
      "mount",
      remote,
      "--managed",
      "--chunk-size",
      "256KiB",
      "--push-interval",
      "60000",
    ]);
    const file = String(managed.info.path);
    expect(fs.statSync(file).size).toBe(32 * 1024 * 1024);
    const data = testRandom().bytes(1_000_000);
    const fd = fs.openSync(file, "r+");
    fs.writeSync(fd, data, 0, data.length, 12345);
    fs.closeSync(fd);
    expect(await stop(managed.child), managed.stderr()).toBe(0);
    expect(mountedFuse().filter((line) => line.includes(path.dirname(file)))).toEqual([]);

    const direct = await start(["mount", remote, "--as", "file"]);
    const back = Buffer.alloc(data.length);
    const readFd = fs.openSync(String(direct.info.path), "r");
    fs.readSync(readFd, back, 0, back.length, 12345);
    fs.closeSync(readFd);
    expect(Buffer.compare(back, data)).toBe(0);
    expect(await stop(direct.child)).toBe(0);
    expect(await stop(server.child)).toBe(0);
  });

  it("refuses a bad address with a message", async () => {
    await expect(start(["serve", "memory:?size=1MiB", "--nbd", "nowhere"])).rejects.toThrow(/not an address/);
  });
});
