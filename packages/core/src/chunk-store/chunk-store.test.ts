import { describe, expect, it } from "vitest";
import { fillChunk } from "./chunk-store.js";

describe("fillChunk", () => {
  it("zero-fills the caller's buffer for missing and short chunks", () => {
    const target = new Uint8Array(8).fill(0xa5);
    fillChunk(target, undefined, 0);
    expect([...target]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    target.fill(0xa5);
    fillChunk(target, new Uint8Array([1, 2]), 0);
    expect([...target]).toEqual([1, 2, 0, 0, 0, 0, 0, 0]);
  });

  it("refuses a blob longer than the chunk", () => {
    expect(() => fillChunk(new Uint8Array(4), new Uint8Array(5), 7)).toThrow(/chunk 7/);
  });
});
