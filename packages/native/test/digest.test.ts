/**
 * Native chunk digests: each chunk's XXH3-128 and BLAKE3 equal what xxhsum
 * and b3sum print for the same bytes; files, O_DIRECT reads and memory
 * segments (also split mid-chunk) agree; ranges, short last chunks, bad
 * requests and aborts behave.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { ChunkLayout, DigestList, MemoryBackend, R3mapError, Stage } from "@r3map/core";
import { afterAll, describe, expect, it } from "vitest";
import { backendDigester, digestChunks, digestWhole } from "../src/digest.js";
import { patternAt, scratchDirectory } from "./helpers.js";

const dir = scratchDirectory("digest");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A file of `size` bytes with a position-dependent pattern. */
function patternFile(name: string, size: number): { file: string; bytes: Buffer } {
  const bytes = Buffer.from(patternAt(0, size));
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return { file, bytes };
}

/** What a reference tool prints for `bytes`. */
function reference(tool: "xxhsum" | "b3sum", bytes: Uint8Array): string {
  const file = path.join(dir, "piece");
  fs.writeFileSync(file, bytes);
  const args = tool === "xxhsum" ? ["-H2", file] : [file];
  return execFileSync(tool, args, { encoding: "utf8" }).split(/\s+/)[0]!;
}

describe("digestChunks", () => {
  const chunkSize = 64 * 1024;
  const size = 3 * 1024 * 1024 + 12_345; // a short last chunk
  const { file, bytes } = patternFile("pattern.bin", size);
  const layout = new ChunkLayout(size, chunkSize);

  it.each(["xxh3-128", "blake3"] as const)(
    "%s of every chunk equals the reference tool's",
    async (algorithm) => {
      const list = await digestWhole({ path: file }, size, chunkSize, { algorithm });
      expect(list.count).toBe(layout.count);
      const tool = algorithm === "blake3" ? "b3sum" : "xxhsum";
      for (const chunk of [0, 1, 17, layout.count - 1]) {
        const piece = bytes.subarray(chunk * chunkSize, Math.min(size, (chunk + 1) * chunkSize));
        expect(list.hex(chunk), `chunk ${chunk}`).toBe(reference(tool, piece));
      }
      // One chunk larger than the read buffer: streamed through the hash.
      const whole = await digestWhole({ path: file }, size, size, { algorithm });
      expect(whole.hex(0)).toBe(reference(tool, bytes));
    },
  );

  it("agrees across a path, an fd, O_DIRECT and memory split mid-chunk", async () => {
    const viaPath = await digestWhole({ path: file }, size, chunkSize);
    const fd = fs.openSync(file, "r");
    try {
      const viaFd = await digestWhole({ fd }, size, chunkSize);
      const direct = await digestWhole({ fd }, size, chunkSize, { direct: true });
      expect(Buffer.compare(viaFd.bytes, viaPath.bytes)).toBe(0);
      expect(Buffer.compare(direct.bytes, viaPath.bytes)).toBe(0);
    } finally {
      fs.closeSync(fd);
    }
    const cut = chunkSize * 5 + 777;
    const segments = [bytes.subarray(0, cut), bytes.subarray(cut)];
    const viaMemory = await digestWhole({ memory: segments }, size, chunkSize, { threads: 2 });
    expect(Buffer.compare(viaMemory.bytes, viaPath.bytes)).toBe(0);
    const oneThread = await digestWhole({ memory: bytes }, size, chunkSize, { threads: 1 });
    expect(Buffer.compare(oneThread.bytes, viaPath.bytes)).toBe(0);
  });

  it("digests only the ranges asked for, in order", async () => {
    const whole = await digestWhole({ path: file }, size, chunkSize);
    const ranges = [
      { first: 2, end: 4 },
      { first: 10, end: 11 },
      { first: layout.count - 2, end: layout.count },
    ];
    const some = await digestChunks({ path: file }, size, { algorithm: "xxh3-128", chunkSize, ranges });
    expect(some.count).toBe(5);
    for (let i = 0; i < some.count; i++) expect(some.hex(i)).toBe(whole.hex(some.chunkAt(i)));
  });

  it("a backend's digester: memory natively, others by reading through readAt", async () => {
    const memory = new MemoryBackend(size);
    await memory.writeAt(bytes, 0);
    const request = { algorithm: "blake3" as const, chunkSize, ranges: DigestList.whole(layout) };
    const expected = (await digestWhole({ path: file }, size, chunkSize, { algorithm: "blake3" })).bytes;
    expect(Buffer.compare(await backendDigester(memory)(request), expected)).toBe(0);
    // A stage hides the memory: the digester reads through it.
    const wrapped = new (class extends Stage {})(memory);
    expect(Buffer.compare(await backendDigester(wrapped)(request), expected)).toBe(0);
  });

  it("refuses bad requests with typed errors and stops when aborted", async () => {
    const ask = (ranges: Array<{ first: number; end: number }>) =>
      digestChunks({ path: file }, size, { algorithm: "xxh3-128", chunkSize, ranges });
    await expect(ask([{ first: 0, end: layout.count + 1 }])).rejects.toMatchObject({
      code: "ERR_OUT_OF_RANGE",
    });
    await expect(
      ask([
        { first: 3, end: 5 },
        { first: 4, end: 6 },
      ]),
    ).rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT" });
    // Asking for more than the file holds (it was truncated meanwhile).
    await expect(digestWhole({ path: file }, size + chunkSize, chunkSize)).rejects.toMatchObject({
      code: "ERR_OUT_OF_RANGE",
    });
    const controller = new AbortController();
    controller.abort();
    await expect(
      digestWhole({ path: file }, size, chunkSize, { signal: controller.signal }),
    ).rejects.toBeInstanceOf(R3mapError);
  });
});
