import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { testRandom } from "@r3map/core/testing";
import { type Mount, type MountDescription, mountFile, mountPath, mountSlice } from "@r3map/mount";
import { fioVerify } from "@r3map/mount/testing";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { leftoversOf, NbdkitRemote, randomImage, scratchDir } from "./helpers.js";

const size = 64 * 1024 * 1024;
const chunkSize = 256 * 1024;
const scratch = scratchDir();
const open: Mount[] = [];
const remotes: NbdkitRemote[] = [];

async function remote(name: string): Promise<NbdkitRemote> {
  const server = await NbdkitRemote.start(randomImage(scratch, size, `${name}.img`));
  remotes.push(server);
  return server;
}

function describeMount(uri: string, managed: boolean): MountDescription {
  return managed
    ? { remote: uri, chunkSize, managed: { pull: { workers: 4 }, push: { intervalMs: 200 } } }
    : { remote: uri, chunkSize };
}

async function track<T extends Mount>(mount: Promise<T>): Promise<T> {
  const opened = await mount;
  open.push(opened);
  return opened;
}

// Only this file's own mounts are checked: other runs on the machine may hold theirs meanwhile.
afterEach(async () => {
  const closing = open.splice(0);
  await Promise.allSettled(closing.map((mount) => mount.close()));
  await Promise.allSettled(remotes.splice(0).map((server) => server.kill()));
  expect(leftoversOf(closing)).toEqual([]);
});

afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe.each([
  ["direct", false],
  ["managed", true],
])("%s mounts over NBD (nbdkit on loopback)", (_kind, managed) => {
  it("file: the main thread reads the cold file with readFileSync; fio verifies; the remote equals the file after close", async () => {
    const server = await remote(`file-${managed}`);
    const original = server.contents();
    const mount = await track(mountFile(describeMount(server.uri, managed)));
    expect(fs.statSync(mount.path).size).toBe(size);
    expect(Buffer.compare(fs.readFileSync(mount.path), original)).toBe(0);
    fioVerify(mount.path, size);
    const model = fs.readFileSync(mount.path);
    await mount.close();
    expect(Buffer.compare(server.contents(), model)).toBe(0);
  });

  it("path: fio verifies on the loop device; the remote equals the device after close", async () => {
    const server = await remote(`path-${managed}`);
    const mount = await track(mountPath(describeMount(server.uri, managed)));
    expect(mount.path).toMatch(/^\/dev\/loop\d+$/);
    fioVerify(mount.path, size, "64k");
    const model = Buffer.alloc(size);
    const fd = fs.openSync(mount.path, "r");
    fs.readSync(fd, model, 0, size, 0);
    fs.closeSync(fd);
    await mount.close();
    expect(Buffer.compare(server.contents(), model)).toBe(0);
  });

  it("slice: the main thread reads every byte of the cold slice, writes patterns, and the remote matches after close", async () => {
    const server = await remote(`slice-${managed}`);
    const model = server.contents();
    const mount = await track(mountSlice(describeMount(server.uri, managed)));
    expect(mount.buffer.length).toBe(size);
    expect(Buffer.compare(mount.buffer, model)).toBe(0);
    const random = testRandom();
    for (let i = 0; i < 200; i++) {
      const offset = random.below(size - 70_000);
      const data = random.bytes(1 + random.below(65_536));
      data.copy(mount.buffer, offset);
      data.copy(model, offset);
    }
    expect(Buffer.compare(mount.buffer, model)).toBe(0);
    await mount.sync();
    expect(Buffer.compare(server.contents(), model)).toBe(0);
    model.fill(7, 1000, 5000);
    mount.buffer.fill(7, 1000, 5000);
    await mount.close();
    expect(Buffer.compare(server.contents(), model)).toBe(0);
  });
});

describe("managed path mount with ext4", () => {
  it("mkfs, mount, write files, unmount, close; reopen from the same remote: files intact", async () => {
    const image = path.join(scratch, "ext4.img");
    fs.writeFileSync(image, Buffer.alloc(0));
    fs.truncateSync(image, size);
    const server = await NbdkitRemote.start(image);
    remotes.push(server);
    const description = describeMount(server.uri, true);
    const target = path.join(scratch, "fs");
    fs.mkdirSync(target);
    const content = testRandom().bytes(3 * 1024 * 1024);

    const first = await track(mountPath(description));
    execFileSync("mkfs.ext4", ["-F", "-q", first.path]);
    execFileSync("mount", [first.path, target]);
    try {
      fs.writeFileSync(path.join(target, "data.bin"), content);
      fs.mkdirSync(path.join(target, "dir"));
      fs.writeFileSync(path.join(target, "dir", "hello.txt"), "hello r3map\n");
    } finally {
      execFileSync("umount", [target]);
    }
    await first.close();

    const second = await track(mountPath(description));
    execFileSync("mount", [second.path, target]);
    try {
      expect(Buffer.compare(fs.readFileSync(path.join(target, "data.bin")), content)).toBe(0);
      expect(fs.readFileSync(path.join(target, "dir", "hello.txt"), "utf8")).toBe("hello r3map\n");
    } finally {
      execFileSync("umount", [target]);
    }
    await second.close();
  });
});
