/**
 * BackendService.Digests: the server hashes its own copy natively and
 * streams the digests in order, in several messages and calls; a server
 * without a digester does not offer it; bad requests fail with typed errors.
 */
import { ChunkLayout, DigestList, MemoryBackend } from "@r3map/core";
import { patternBytes } from "@r3map/core/testing";
import { digestWhole } from "@r3map/native";
import { describe, expect, it } from "vitest";
import { sliceRanges } from "../src/digests.js";
import { ConnectBackend, ConnectServer } from "../src/index.js";

describe("Digests over the wire", () => {
  const size = 8 * 1024 * 1024 + 4321;
  const bytes = patternBytes(size, 3);

  it.each(["grpc", "connect"] as const)(
    "the server's digests equal the local ones, streamed in small messages (%s)",
    async (protocol) => {
      const memory = new MemoryBackend(size);
      await memory.writeAt(bytes, 0);
      // A small message limit makes the server send many batches.
      const server = await ConnectServer.listen({ backend: memory, maxRequestBytes: 64 * 1024 });
      const client = await ConnectBackend.connect({ baseUrl: server.baseUrl, protocol });
      try {
        expect(client.info.digests).toBe(true);
        for (const algorithm of ["xxh3-128", "blake3"] as const) {
          const layout = new ChunkLayout(size, 4096);
          const request = { algorithm, chunkSize: 4096, ranges: DigestList.whole(layout) };
          const remote = await client.digests!(request);
          const local = await digestWhole({ memory: bytes }, size, 4096, { algorithm });
          expect(remote.length).toBe(layout.count * (algorithm === "blake3" ? 32 : 16));
          expect(Buffer.compare(remote, local.bytes)).toBe(0);
        }
        const ranges = [
          { first: 1, end: 3 },
          { first: 2040, end: layout(size).count },
        ];
        const some = await client.digests!({ algorithm: "xxh3-128", chunkSize: 4096, ranges });
        const whole = await digestWhole({ memory: bytes }, size, 4096);
        const list = new DigestList("xxh3-128", 4096, ranges, some);
        for (let i = 0; i < list.count; i++) expect(list.hex(i)).toBe(whole.hex(list.chunkAt(i)));
        await expect(
          client.digests!({ algorithm: "xxh3-128", chunkSize: 4096, ranges: [{ first: 0, end: 1 << 30 }] }),
        ).rejects.toMatchObject({ code: "ERR_OUT_OF_RANGE" });
      } finally {
        await client.close();
        await server.close();
      }
    },
  );

  it("is not offered when the server has no way to hash", async () => {
    const server = await ConnectServer.listen({ backend: new MemoryBackend(size), digests: false });
    const client = await ConnectBackend.connect({ baseUrl: server.baseUrl });
    try {
      expect(client.info.digests).toBe(false);
      expect(client.digests).toBeUndefined();
    } finally {
      await client.close();
      await server.close();
    }
  });

  it("slices ranges by chunk position", () => {
    const ranges = [
      { first: 0, end: 4 },
      { first: 10, end: 12 },
      { first: 20, end: 30 },
    ];
    expect(sliceRanges(ranges, 3, 4)).toEqual([
      { first: 3, end: 4 },
      { first: 10, end: 12 },
      { first: 20, end: 21 },
    ]);
    expect(sliceRanges(ranges, 6, 100)).toEqual([{ first: 20, end: 30 }]);
  });
});

function layout(size: number): ChunkLayout {
  return new ChunkLayout(size, 4096);
}
