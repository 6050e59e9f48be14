import { describe, expect, it } from "vitest";
import { MemoryBackend } from "../backends/memory.js";
import { InstrumentedBackend } from "../testing/index.js";
import { ChunkedStage } from "./chunked.js";

describe("ChunkedStage", () => {
  const make = () => {
    const inner = new InstrumentedBackend(new MemoryBackend(2 * 4096 + 1000));
    return { inner, stage: new ChunkedStage(inner, 4096) };
  };

  it.each([
    ["a misaligned offset", 4096, 1, "ERR_MISALIGNED"],
    ["a short chunk", 4095, 0, "ERR_MISALIGNED"],
    ["a long chunk", 4097, 0, "ERR_MISALIGNED"],
    ["two chunks at once", 8192, 0, "ERR_MISALIGNED"],
    ["an offset past the end", 4096, 3 * 4096, "ERR_OUT_OF_RANGE"],
    ["the last chunk at full size", 4096, 2 * 4096, "ERR_OUT_OF_RANGE"],
    ["a negative offset", 4096, -4096, "ERR_INVALID_ARGUMENT"],
    ["a fractional offset", 4096, 0.5, "ERR_INVALID_ARGUMENT"],
  ])("refuses %s, and the backend never sees it", async (_what, length, offset, code) => {
    const { inner, stage } = make();
    await expect(stage.readAt(new Uint8Array(length), offset)).rejects.toMatchObject({ code });
    await expect(stage.writeAt(new Uint8Array(length), offset)).rejects.toMatchObject({ code });
    expect(inner.reads).toEqual([]);
    expect(inner.writes).toEqual([]);
  });

  it("accepts the short last chunk at its own length", async () => {
    const { inner, stage } = make();
    await stage.writeAt(new Uint8Array(1000).fill(7), 2 * 4096);
    await stage.readAt(new Uint8Array(1000), 2 * 4096);
    expect(inner.writes).toEqual([8192]);
  });
});
