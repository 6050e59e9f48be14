import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { access } from "node:fs/promises";
import { join } from "node:path";
import { MemoryBackend } from "@r3map/core";
import { waitFor } from "@r3map/core/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NbdServer } from "../src/index.js";
import { have, randomFile, run, scratchDir, startChild } from "./helpers.js";

const MiB = 1024 * 1024;
const scratch = scratchDir();
let server: NbdServer;
let uri: string;
let port: number;

beforeAll(async () => {
  server = new NbdServer({
    exports: [
      { name: "big", backend: new MemoryBackend(256 * MiB), description: "256 MiB of memory" },
      { name: "small", backend: new MemoryBackend(64 * MiB) },
      { name: "ro", backend: MemoryBackend.from(new Uint8Array(MiB).fill(7)), readOnly: true },
      { name: "aligned", backend: new MemoryBackend(MiB), minimumBlockSize: 512 },
    ],
  });
  port = ((await server.listen({ port: 0 })) as { port: number }).port;
  uri = `nbd://127.0.0.1:${port}`;
});

afterAll(async () => {
  await server.close();
  scratch.remove();
});

describe.skipIf(!have("nbdinfo"))("nbdinfo", () => {
  it("lists every export with its size, flags and block sizes", async () => {
    const { stdout } = await run("nbdinfo", ["--list", "--json", uri]);
    const listing = JSON.parse(stdout) as { exports: Array<Record<string, unknown>> };
    const byName = new Map(listing.exports.map((e) => [e["export-name"], e]));
    expect([...byName.keys()].sort()).toEqual(["aligned", "big", "ro", "small"]);
    const big = byName.get("big")!;
    expect(big["export-size"]).toBe(256 * MiB);
    expect(big.description).toBe("256 MiB of memory");
    expect(big.is_read_only).toBe(false);
    expect(big.can_flush).toBe(true);
    expect(big.can_fua).toBe(true);
    expect(big.can_trim).toBe(true);
    expect(big.can_zero).toBe(true);
    expect(big.can_fast_zero).toBe(true);
    expect(big.can_multi_conn).toBe(true);
    expect(big.block_size_minimum).toBe(1);
    expect(big.block_size_preferred).toBe(4096);
    expect(big.block_size_maximum).toBe(32 * MiB);
    expect(big.contexts).toContain("base:allocation");
    const ro = byName.get("ro")!;
    expect(ro.is_read_only).toBe(true);
    expect(ro.can_trim).toBe(false);
    expect(ro.can_zero).toBe(false);
    expect(byName.get("aligned")!.block_size_minimum).toBe(512);
  });

  it("shows one export and reports its allocation map", async () => {
    const { stdout } = await run("nbdinfo", [`${uri}/small`]);
    expect(stdout).toMatch(/export-size: 67108864/);
    const { stdout: map } = await run("nbdinfo", ["--map", `${uri}/small`]);
    expect(map.trim()).toMatch(/^0\s+67108864\s+0\s+data$/);
  });

  it("fails cleanly for an unknown export and keeps serving", async () => {
    await expect(run("nbdinfo", [`${uri}/nope`])).rejects.toThrow(/unknown export|not found|No such/i);
    const { stdout } = await run("nbdinfo", ["--size", `${uri}/small`]);
    expect(stdout.trim()).toBe(String(64 * MiB));
  });
});

describe.skipIf(!have("nbdcopy"))("nbdcopy", () => {
  it("round-trips 256 MiB of random data", async () => {
    const source = join(scratch.path, "random.bin");
    const back = join(scratch.path, "back.bin");
    await randomFile(source, 256);
    await run("nbdcopy", [source, `${uri}/big`]);
    await run("nbdcopy", [`${uri}/big`, back]);
    await run("cmp", [source, back]);
  });

  it("is refused writing to a read-only export", async () => {
    const source = join(scratch.path, "one.bin");
    await randomFile(source, 1);
    await expect(run("nbdcopy", [source, `${uri}/ro`])).rejects.toThrow();
  });
});

describe.skipIf(!have("qemu-img"))("qemu-img", () => {
  it("converts into our export and compares equal", async () => {
    const source = join(scratch.path, "qemu-src.raw");
    await randomFile(source, 64);
    await run("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", source, `${uri}/small`]);
    await run("qemu-img", ["compare", "-f", "raw", "-F", "raw", source, `${uri}/small`]);
    const out = join(scratch.path, "qemu-out.qcow2");
    await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", `${uri}/small`, out]);
    await run("qemu-img", ["compare", "-f", "qcow2", "-F", "raw", out, source]);
  });
});

describe.skipIf(!have("fio"))("fio", () => {
  it("passes a crc32c-verified random write/read job with the nbd engine", async () => {
    const { stdout } = await run("fio", [
      "--name=verify",
      "--ioengine=nbd",
      `--uri=${uri}/small`,
      "--rw=randwrite",
      "--bs=4k",
      "--size=16M",
      "--iodepth=16",
      "--verify=crc32c",
      "--verify_fatal=1",
      "--do_verify=1",
      "--output-format=json",
    ]);
    const report = JSON.parse(stdout.slice(stdout.indexOf("{"))) as { jobs: Array<{ error: number }> };
    expect(report.jobs[0]!.error).toBe(0);
  });
});

const canMount =
  have("nbdfuse", "losetup", "mkfs.ext4", "fusermount3") &&
  process.getuid?.() === 0 &&
  existsSync("/dev/fuse");
describe.skipIf(!canMount)("nbdfuse + loop + ext4", () => {
  it("makes a file system on our export, writes, reads back and compares", async () => {
    const mnt = join(scratch.path, "fuse");
    const fsdir = join(scratch.path, "fs");
    execFileSync("mkdir", ["-p", mnt, fsdir]);
    const fuse = startChild("nbdfuse", [join(mnt, "disk"), `${uri}/big`]);
    let loop: string | undefined;
    let mounted = false;
    try {
      // Only asynchronous I/O on the mount: this thread also runs the NBD server
      // that answers it, so a synchronous read would deadlock.
      await waitFor(
        () =>
          access(join(mnt, "disk")).then(
            () => true,
            () => false,
          ),
        "nbdfuse to expose the disk",
      );
      loop = (await run("losetup", ["-f", "--show", "--direct-io=on", join(mnt, "disk")])).stdout.trim();
      await run("mkfs.ext4", ["-F", "-q", loop]);
      await run("mount", [loop, fsdir]);
      mounted = true;
      const data = join(scratch.path, "payload.bin");
      await randomFile(data, 32);
      await run("cp", [data, join(fsdir, "payload.bin")]);
      // This file system only: a plain `sync` also waits for every other mount on the machine,
      // and one whose server is gone (another test's leftover) would hang it forever.
      await run("sync", ["--file-system", join(fsdir, "payload.bin")]);
      await run("umount", [fsdir]);
      mounted = false;
      await run("mount", [loop, fsdir]);
      mounted = true;
      await run("cmp", [data, join(fsdir, "payload.bin")]);
    } finally {
      const bounded = { timeout: 20_000 };
      if (mounted) await run("umount", [fsdir], bounded).catch(() => run("umount", ["-l", fsdir], bounded));
      if (loop) await run("losetup", ["-d", loop], bounded).catch(() => undefined);
      await run("fusermount3", ["-u", mnt], bounded).catch(() => undefined);
      await fuse.stop();
    }
  });
});
