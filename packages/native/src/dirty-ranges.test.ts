import { describe, expect, it } from "vitest";
import { chunksOfRanges, dirtyRangesFromPairs } from "./dirty-ranges.js";

describe("dirty ranges", () => {
  it("turns [start, end) pairs into ranges", () => {
    expect(dirtyRangesFromPairs(new Float64Array([0, 4096, 8192, 16384]))).toEqual([
      { offset: 0, length: 4096 },
      { offset: 8192, length: 8192 },
    ]);
    expect(dirtyRangesFromPairs(new Float64Array([]))).toEqual([]);
  });

  it("lists each touched chunk once, in order, including ranges that span chunks", () => {
    const ranges = [
      { offset: 0, length: 4096 },
      { offset: 8192, length: 4096 }, // same chunk 0 again
      { offset: 65536 - 4096, length: 3 * 4096 }, // chunks 0 and 1
      { offset: 5 * 65536, length: 4096 },
    ];
    expect(chunksOfRanges(ranges, 65536)).toEqual([0, 1, 5]);
  });
});
