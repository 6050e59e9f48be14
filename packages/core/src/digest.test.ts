import { describe, expect, it } from "vitest";
import { ChunkLayout } from "./chunk-layout.js";
import { checkDigestRequest, DigestList, diffDigests, requestSpans, TransferPlan } from "./digest.js";

/** A list of xxh3-128-sized digests whose bytes are the chunk index plus `salt` for chunks in `changed`. */
function list(ranges: Array<{ first: number; end: number }>, changed: Set<number> = new Set()): DigestList {
  const chunks = ranges.flatMap(({ first, end }) => Array.from({ length: end - first }, (_, i) => first + i));
  const bytes = new Uint8Array(chunks.length * 16);
  chunks.forEach((chunk, i) => {
    new DataView(bytes.buffer).setUint32(i * 16, chunk, true);
    if (changed.has(chunk)) bytes[i * 16 + 15] = 1;
  });
  return new DigestList("xxh3-128", 4096, ranges, bytes);
}

describe("diffDigests and TransferPlan", () => {
  const size = 100 * 4096 + 100; // 101 chunks, the last 100 bytes long

  it("finds the differing chunks as ascending runs, and their bytes (short last chunk included)", () => {
    const whole = [{ first: 0, end: 101 }];
    const plan = diffDigests(size, list(whole), list(whole, new Set([3, 4, 5, 50, 100])));
    expect(plan.runs).toEqual([
      { first: 3, end: 6 },
      { first: 50, end: 51 },
      { first: 100, end: 101 },
    ]);
    expect(plan.chunks).toBe(5);
    expect(plan.bytes).toBe(4 * 4096 + 100);
    expect([...plan.byteRanges(8192)]).toEqual([
      [3 * 4096, 8192],
      [5 * 4096, 4096],
      [50 * 4096, 4096],
      [100 * 4096, 100],
    ]);
  });

  it("compares lists over several ranges by chunk index", () => {
    const ranges = [
      { first: 2, end: 4 },
      { first: 90, end: 101 },
    ];
    const plan = diffDigests(size, list(ranges), list(ranges, new Set([3, 95])));
    expect([...plan.chunkIndexes()]).toEqual([3, 95]);
  });

  it("refines coarse runs into fine chunk ranges, clamped at the end", () => {
    const coarse = new TransferPlan(size, 16 * 4096, [
      { first: 1, end: 2 },
      { first: 6, end: 7 },
    ]);
    expect(coarse.refine(4096)).toEqual([
      { first: 16, end: 32 },
      { first: 96, end: 101 },
    ]);
    expect(() => coarse.refine(3000)).toThrow(/divide/);
  });

  it("merges plans and builds them from chunk sets", () => {
    const a = TransferPlan.fromChunks(size, 4096, [9, 1, 2, 2]);
    const b = TransferPlan.fromChunks(size, 4096, [3, 20]);
    expect(TransferPlan.merge(size, 4096, [a, b]).runs).toEqual([
      { first: 1, end: 4 },
      { first: 9, end: 10 },
      { first: 20, end: 21 },
    ]);
    expect(TransferPlan.everything(size, 4096).bytes).toBe(size);
    expect(TransferPlan.everything(0, 4096).empty).toBe(true);
  });

  it("refuses lists that do not cover the same chunks, and bad requests", () => {
    expect(() => diffDigests(size, list([{ first: 0, end: 3 }]), list([{ first: 0, end: 4 }]))).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }),
    );
    expect(() => new DigestList("blake3", 4096, [{ first: 0, end: 2 }], new Uint8Array(63))).toThrow(
      expect.objectContaining({ code: "ERR_PROTOCOL" }),
    );
    const request = (ranges: Array<{ first: number; end: number }>) => ({
      algorithm: "xxh3-128" as const,
      chunkSize: 4096,
      ranges,
    });
    expect(checkDigestRequest(request([{ first: 0, end: 101 }]), size)).toBe(101);
    expect(() => checkDigestRequest(request([{ first: 0, end: 102 }]), size)).toThrow(
      expect.objectContaining({ code: "ERR_OUT_OF_RANGE" }),
    );
    expect(() => checkDigestRequest(request([{ first: 5, end: 5 }]), size)).toThrow(/non-empty/);
    expect(() => checkDigestRequest(request([{ first: 0, end: 50 }]), size, 10)).toThrow(/split it/);
    expect(() => checkDigestRequest({ ...request([]), algorithm: "md5" as never }, size)).toThrow(/unknown/);
    expect(requestSpans(request([{ first: 100, end: 101 }]), size)).toEqual([[100 * 4096, 100]]);
    expect(DigestList.whole(new ChunkLayout(size, 4096))).toEqual([{ first: 0, end: 101 }]);
  });
});
