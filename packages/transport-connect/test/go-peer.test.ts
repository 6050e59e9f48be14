import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { type Backend, MemoryBackend } from "@r3map/core";
import { describeBackendConformance } from "@r3map/core/testing";
import { afterAll, describe, expect, it } from "vitest";
import { ConnectBackend, ConnectServer } from "../src/index.js";

// grpc-go is the stack the original r3map speaks; this peer is built from the
// same protos with the same plugins (test/go-peer). Needs Go.
const script = fileURLToPath(new URL("../scripts/build-go-peer.sh", import.meta.url));
const hasGo = spawnSync("go", ["version"]).status === 0;
if (!hasGo) console.warn("skipping the grpc-go interop tests: the go toolchain is not installed");

let peerPath: string | undefined;
function peer(): string {
  peerPath ??= spawnSync("bash", [script], { encoding: "utf8", timeout: 240_000 }).stdout.trim();
  if (!peerPath) throw new Error("building the grpc-go peer failed; run scripts/build-go-peer.sh to see why");
  return peerPath;
}

const children = new Set<ChildProcess>();
afterAll(() => {
  for (const child of children) child.kill("SIGKILL");
});

/** Starts the Go server with an empty resource of `size` bytes; resolves with its port. */
async function startGoServer(size: number): Promise<{ port: number; stop(): void }> {
  const child = spawn(peer(), ["server", String(size)], { stdio: ["pipe", "pipe", "inherit"] });
  children.add(child);
  const stop = () => {
    child.stdin?.end();
    child.kill("SIGKILL");
    children.delete(child);
  };
  const lines = createInterface({ input: child.stdout! });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the grpc-go peer did not start within 10 s")), 10_000);
    child.once("exit", (code) => reject(new Error(`the grpc-go peer exited with ${code}`)));
    lines.once("line", (line) => {
      clearTimeout(timer);
      const match = /^listening (\d+)$/.exec(line);
      if (match) resolve(Number(match[1]));
      else reject(new Error(`unexpected output from the grpc-go peer: ${line}`));
    });
  }).catch((error: unknown) => {
    stop();
    throw error;
  });
  return { port, stop };
}

/** A client whose close also stops the Go server it talks to. */
function stopping(client: ConnectBackend, stop: () => void): Backend {
  return {
    size: client.size,
    readAt: (buffer, offset) => client.readAt(buffer, offset),
    writeAt: (buffer, offset) => client.writeAt(buffer, offset),
    sync: () => client.sync(),
    close: async () => {
      await client.close();
      stop();
    },
  };
}

describe.skipIf(!hasGo)("interop with grpc-go (the original r3map's stack)", { timeout: 240_000 }, () => {
  it("builds the peer", { timeout: 240_000 }, () => {
    expect(peer()).toMatch(/go-peer$/);
  });

  describeBackendConformance(
    "ConnectBackend against a grpc-go server with the original's Backend service",
    async (size) => {
      const server = await startGoServer(size);
      // No GetInfo on an original server: the size is passed, as users must.
      const client = await ConnectBackend.connect({ baseUrl: `http://127.0.0.1:${server.port}`, size });
      return stopping(client, server.stop);
    },
  );

  it("answers a grpc-go client: token check, WriteAt/ReadAt/Sync, OUT_OF_RANGE", async () => {
    const backend = new MemoryBackend(1024 * 1024);
    const server = await ConnectServer.listen({ backend, tokens: ["go-token"] });
    try {
      const { stdout } = await promisify(execFile)(
        peer(),
        ["client", `127.0.0.1:${server.port}`, "go-token"],
        {
          timeout: 30_000,
        },
      );
      expect(stdout.trim()).toBe("ok");
      const back = new Uint8Array(13);
      await backend.readAt(back, 4096);
      expect(new TextDecoder().decode(back)).toBe("r3map-go-peer");
      // The refused unauthenticated write changed nothing.
      const head = new Uint8Array(1);
      await backend.readAt(head, 0);
      expect(head[0]).toBe(0);
    } finally {
      await server.close();
    }
  });

  it("asks for the size when a server has no GetInfo", async () => {
    const server = await startGoServer(4096);
    try {
      await expect(
        ConnectBackend.connect({ baseUrl: `http://127.0.0.1:${server.port}` }),
      ).rejects.toMatchObject({
        code: "ERR_NOT_SUPPORTED",
        message: expect.stringMatching(/pass the size/),
      });
    } finally {
      server.stop();
    }
  });
});
