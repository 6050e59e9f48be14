/**
 * BackendService.WriteScattered: many ranges in one call land as WriteAt
 * would put them, split into calls under the server's limit; overlapping or
 * out-of-range pieces are refused; a read-only server does not offer it.
 */
import { MemoryBackend } from "@r3map/core";
import { patternBytes } from "@r3map/core/testing";
import { describe, expect, it } from "vitest";
import { ConnectBackend, ConnectServer } from "../src/index.js";

describe("WriteScattered", () => {
  it("writes scattered pieces in calls under the server's limit", async () => {
    const size = 4 * 1024 * 1024;
    const memory = new MemoryBackend(size);
    const server = await ConnectServer.listen({ backend: memory, maxRequestBytes: 64 * 1024 });
    const client = await ConnectBackend.connect({ baseUrl: server.baseUrl });
    try {
      expect(client.info.writeScattered).toBe(true);
      // 300 pages, 1.2 MiB: at least 19 calls of 64 KiB.
      const pieces = Array.from({ length: 300 }, (_, i) => ({
        offset: i * 12_288,
        data: patternBytes(4096, i),
      }));
      await client.writeScattered!(pieces);
      for (const piece of [pieces[0]!, pieces[150]!, pieces[299]!]) {
        const back = new Uint8Array(4096);
        await memory.readAt(back, piece.offset);
        expect(Buffer.compare(back, piece.data)).toBe(0);
      }
      const gap = new Uint8Array(4096);
      await memory.readAt(gap, 4096);
      expect(gap.every((byte) => byte === 0)).toBe(true);
      await expect(
        client.writeScattered!([
          { offset: 0, data: new Uint8Array(8192) },
          { offset: 4096, data: new Uint8Array(10) },
        ]),
      ).rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT" });
      await expect(
        client.writeScattered!([{ offset: size - 10, data: new Uint8Array(20) }]),
      ).rejects.toMatchObject({
        code: "ERR_OUT_OF_RANGE",
      });
    } finally {
      await client.close();
      await server.close();
    }
  });

  it("is not offered for a read-only resource", async () => {
    const server = await ConnectServer.listen({ backend: new MemoryBackend(65_536, { readOnly: true }) });
    const client = await ConnectBackend.connect({ baseUrl: server.baseUrl });
    try {
      expect(client.info.writeScattered).toBe(false);
      expect(client.writeScattered).toBeUndefined();
    } finally {
      await client.close();
      await server.close();
    }
  });
});
