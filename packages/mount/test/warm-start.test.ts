/**
 * managed.warm: a managed mount whose file cache holds a stale copy (left by
 * an earlier run) compares digests with the remote — which hashes its own
 * copy — and pulls only the chunks that differ; the cache then equals the
 * remote. A remote that cannot hash is pulled whole, and the engine says why.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { MountEngine } from "@r3map/mount";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { randomImage, scratchDir } from "./helpers.js";

const scratch = scratchDir();
const chunkSize = 64 * 1024;
const size = 16 * 1024 * 1024 + 5000; // the last chunk is short
const servers: ChildProcess[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    const exited = new Promise((resolve) => server.once("exit", resolve));
    server.kill("SIGTERM");
    await exited;
  }
});
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** Serves `image` over Connect from a process of its own (`fixture`), resolving with its URI. */
async function serve(fixture: string, image: string): Promise<string> {
  const server = spawn(process.execPath, [path.join(import.meta.dirname, "fixtures", fixture), image], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  servers.push(server);
  let out = "";
  server.stdout!.on("data", (data: Buffer) => {
    out += data;
  });
  const deadline = Date.now() + 30_000;
  while (!out.includes("\n")) {
    if (Date.now() > deadline || server.exitCode !== null) throw new Error("the remote did not start");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return out.trim();
}

/** A cache file: the image with `changed` chunks altered (and the short last one, when asked). */
function staleCache(dir: string, image: string, changed: number[]): string {
  const bytes = fs.readFileSync(image);
  for (const chunk of changed) bytes[Math.min(size - 1, chunk * chunkSize + 99)]! ^= 0xff;
  const cache = path.join(dir, "cache.img");
  fs.writeFileSync(cache, bytes);
  return cache;
}

async function pullAll(remote: string, cache: string, warm: boolean) {
  const engine = await MountEngine.open({
    remote,
    schemes: ["@r3map/transport-connect"],
    chunkSize,
    managed: { local: `file://${cache}`, warm, pull: { workers: 4 }, push: false },
  });
  try {
    await engine.start();
    await engine.pulled();
    return { warm: engine.warmStart, pulled: engine.progress()!.bytesPulled };
  } finally {
    await engine.close();
  }
}

describe("managed.warm", () => {
  it("pulls only the chunks of a stale file cache that differ from the remote", async () => {
    const dir = fs.mkdtempSync(path.join(scratch, "warm-"));
    const image = randomImage(dir, size);
    const chunks = Math.ceil(size / chunkSize);
    const changed = [0, 7, 100, chunks - 1];
    const cache = staleCache(dir, image, changed);
    const remote = await serve("digest-remote.mjs", image);
    const { warm, pulled } = await pullAll(remote, cache, true);
    expect(warm).toEqual({ compared: chunks, kept: chunks - changed.length });
    expect(pulled).toBe(3 * chunkSize + (size - (chunks - 1) * chunkSize));
    expect(fs.readFileSync(cache).equals(fs.readFileSync(image))).toBe(true);
  });

  it("without digests from the remote, pulls everything and says why", async () => {
    const dir = fs.mkdtempSync(path.join(scratch, "cold-"));
    const image = randomImage(dir, size);
    const cache = staleCache(dir, image, [3]);
    // This remote's process has no digester: it cannot hash.
    const remote = await serve("connect-remote.mjs", image);
    const { warm, pulled } = await pullAll(`${remote}?token=mount-test`, cache, true);
    expect(warm).toMatchObject({ kept: 0, skipped: "the remote cannot compute digests" });
    expect(pulled).toBe(size);
    expect(fs.readFileSync(cache).equals(fs.readFileSync(image))).toBe(true);
  });
});
