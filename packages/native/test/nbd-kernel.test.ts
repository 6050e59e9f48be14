import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import * as net from "node:net";
import { retryUntil } from "@r3map/core/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findFreeNbdDevice, isKernelNbdAvailable, KernelNbdDevice } from "../src/nbd-kernel.js";
import { isRoot } from "./helpers.js";
import { negotiateExport } from "./nbd-handshake.js";

const available = isKernelNbdAvailable();
const SIZE = 16 * 1024 * 1024;

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as net.AddressInfo;
  server.close();
  return port;
}

/** Connects to nbdkit once it listens (it was just started). */
function connectWithin(port: number, timeoutMs: number): Promise<net.Socket> {
  return retryUntil(
    async () => {
      const socket = net.connect(port, "127.0.0.1");
      try {
        await once(socket, "connect");
        return socket;
      } catch (error) {
        socket.destroy();
        throw error;
      }
    },
    { timeoutMs, intervalMs: 20 },
  );
}

describe("kernel NBD", () => {
  let nbdkit: ChildProcess | undefined;
  let port = 0;

  beforeAll(async () => {
    port = await freePort();
    nbdkit = spawn("nbdkit", ["-f", "-i", "127.0.0.1", "-p", String(port), "memory", `size=${SIZE}`], {
      stdio: "ignore",
    });
  });
  afterAll(async () => {
    if (nbdkit !== undefined && nbdkit.exitCode === null) {
      nbdkit.kill();
      await once(nbdkit, "exit");
    }
  });

  it.skipIf(available)("refuses with a typed error where the kernel has no NBD", async () => {
    expect(findFreeNbdDevice()).toBeUndefined();
    await expect(KernelNbdDevice.connect({ socketFd: 0, size: SIZE, flags: 0 })).rejects.toMatchObject({
      name: "R3mapError",
      code: "ERR_KERNEL_FEATURE_MISSING",
      message: "kernel NBD not available: load the nbd module or use the FUSE device",
    });
  });

  it("negotiates an export with nbdkit (the handshake the kernel client needs)", async () => {
    const socket = await connectWithin(port, 10_000);
    try {
      const { size, flags } = await negotiateExport(socket);
      expect(size).toBe(SIZE);
      expect(flags & 1).toBe(1); // NBD_FLAG_HAS_FLAGS
    } finally {
      socket.destroy();
    }
  });

  it.skipIf(!available || !isRoot())(
    available
      ? "serves nbdkit's export as /dev/nbdN"
      : "kernel NBD not available: load the nbd module or use the FUSE device",
    async () => {
      const socket = await connectWithin(port, 10_000);
      const { size, flags } = await negotiateExport(socket);
      const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
      await using device = await KernelNbdDevice.connect({ socketFd: fd, size, flags });
      const { execFileSync } = await import("node:child_process");
      expect(
        Number(execFileSync("blockdev", ["--getsize64", device.path], { encoding: "utf8" }).trim()),
      ).toBe(SIZE);
      socket.destroy();
    },
  );
});
