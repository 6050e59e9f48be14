import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { type Backend, type Extent, MemoryBackend } from "@r3map/core";
import { InstrumentedBackend, patternBytes, plainBackend } from "@r3map/core/testing";
import { describe, expect, it } from "vitest";
import { ConnectBackend, ConnectServer, proto } from "../src/index.js";

/** A memory backend that also reports which 4 KiB blocks hold only zeros. */
function withBlockStatus(inner: MemoryBackend): Backend {
  return {
    size: inner.size,
    readAt: (buffer, offset) => inner.readAt(buffer, offset),
    writeAt: (buffer, offset) => inner.writeAt(buffer, offset),
    sync: () => inner.sync(),
    close: () => inner.close(),
    blockStatus: async (offset, length) => {
      const extents: Extent[] = [];
      for (let at = offset; at < offset + length; at += 4096) {
        const block = new Uint8Array(Math.min(4096, offset + length - at));
        await inner.readAt(block, at);
        const zero = block.every((byte) => byte === 0);
        const last = extents.at(-1);
        if (last && last.zero === zero) last.length += block.length;
        else extents.push({ offset: at, length: block.length, zero, hole: false });
      }
      return extents;
    },
  };
}

describe("the backend's optional operations over the wire", () => {
  it("offers trim and writeZeroes when the served backend has them", async () => {
    const server = await ConnectServer.listen({ backend: new MemoryBackend(64 * 1024) });
    const client = await ConnectBackend.connect({ baseUrl: server.baseUrl });
    try {
      expect(client.info).toMatchObject({ trim: true, writeZeroes: true, blockStatus: false });
      expect(client.blockStatus).toBeUndefined();
      await client.writeAt(patternBytes(64 * 1024, 1), 0);
      await client.writeZeroes!(4096, 8192);
      await client.trim!(32 * 1024, 100);
      const all = new Uint8Array(64 * 1024);
      await client.readAt(all, 0);
      const expected = patternBytes(64 * 1024, 1);
      expected.fill(0, 4096, 4096 + 8192);
      expected.fill(0, 32 * 1024, 32 * 1024 + 100);
      expect(Buffer.compare(all, expected)).toBe(0);
      await expect(client.trim!(60 * 1024, 8192)).rejects.toMatchObject({ code: "ERR_OUT_OF_RANGE" });
    } finally {
      await client.close();
      await server.close();
    }
  });

  it("leaves them undefined when the served backend lacks them", async () => {
    // Only the four required calls: stages pass a store's capabilities through, so wrap it plainly.
    const server = await ConnectServer.listen({
      backend: plainBackend(new InstrumentedBackend(new MemoryBackend(4096))),
    });
    const client = await ConnectBackend.connect({ baseUrl: server.baseUrl });
    try {
      expect(client.trim).toBeUndefined();
      expect(client.writeZeroes).toBeUndefined();
      // A client that calls anyway hears UNIMPLEMENTED with the exact code.
      const raw = createClient(
        proto.r3mapV1.BackendService,
        createGrpcTransport({ baseUrl: server.baseUrl }),
      );
      const error = await raw.trim({ offset: 0n, length: 16n }).catch((e: unknown) => ConnectError.from(e));
      expect(error).toBeInstanceOf(ConnectError);
      expect((error as ConnectError).code).toBe(Code.Unimplemented);
      expect((error as ConnectError).metadata.get("r3map-error-code")).toBe("ERR_NOT_SUPPORTED");
    } finally {
      await client.close();
      await server.close();
    }
  });

  it("reports block status", async () => {
    const memory = new MemoryBackend(16 * 4096);
    await memory.writeAt(patternBytes(4096, 2), 4 * 4096);
    const server = await ConnectServer.listen({ backend: withBlockStatus(memory) });
    const client = await ConnectBackend.connect({ baseUrl: server.baseUrl });
    try {
      expect(client.info.blockStatus).toBe(true);
      expect(await client.blockStatus!(0, 16 * 4096)).toEqual([
        { offset: 0, length: 4 * 4096, zero: true, hole: false },
        { offset: 4 * 4096, length: 4096, zero: false, hole: false },
        { offset: 5 * 4096, length: 11 * 4096, zero: true, hole: false },
      ]);
    } finally {
      await client.close();
      await server.close();
    }
  });
});
