/**
 * Dirty tracking on a userfaultfd region (WP_ASYNC + PAGEMAP_SCAN): each scan
 * returns exactly the pages written since the previous one, and fetching a
 * chunk (a read fault) does not count as a write.
 */
import { ChunkBitmap, MemoryBackend } from "@r3map/core";
import { testRandom } from "@r3map/core/testing";
import { describe, expect, it } from "vitest";
import { chunksOfRanges, type DirtyRange } from "../src/dirty-ranges.js";
import { UffdRegion } from "../src/uffd-region.js";

const PAGE = 4096;
const features = UffdRegion.features();
const WP_ASYNC = 1 << 15;
const skipReason = !features.available
  ? "userfaultfd unavailable: run as root"
  : (features.features & WP_ASYNC) === 0
    ? "the kernel lacks UFFD_FEATURE_WP_ASYNC (Linux 6.7+)"
    : undefined;

/** The page ranges covering `offsets`, merged: what PAGEMAP_SCAN should report. */
function expectedRanges(offsets: number[]): DirtyRange[] {
  const pages = [...new Set(offsets.map((offset) => Math.floor(offset / PAGE)))].sort((a, b) => a - b);
  const ranges: DirtyRange[] = [];
  for (const page of pages) {
    const last = ranges[ranges.length - 1];
    if (last !== undefined && last.offset + last.length === page * PAGE) last.length += PAGE;
    else ranges.push({ offset: page * PAGE, length: PAGE });
  }
  return ranges;
}

describe.skipIf(skipReason !== undefined)("UffdRegion dirty tracking", () => {
  const kinds = [
    { name: "anonymous memory", memory: "anonymous", cacheInMemfd: false },
    { name: "a memfd (UFFDIO_COPY)", memory: "memfd", cacheInMemfd: false },
    { name: "a memfd that is its own cache (UFFDIO_CONTINUE)", memory: "memfd", cacheInMemfd: true },
  ] as const;
  it.each(kinds)(
    "returns exactly the written ranges over 3 rounds, re-protecting each time: $name",
    (kind) => {
      const size = 32 * 1024 * 1024;
      const chunkSize = 64 * 1024;
      const chunks = size / chunkSize;
      const memory = new MemoryBackend(size);
      const presence = new ChunkBitmap(chunks);
      presence.setAll();
      (memory.segments[0] as Uint8Array).fill(0x5a);
      // Everything is present, so no JavaScript serves this region and this thread may touch it.
      using region = UffdRegion.create({
        size,
        chunkSize,
        presence,
        memory: kind.memory,
        cacheInMemfd: kind.cacheInMemfd,
        ...(kind.cacheInMemfd ? {} : { cache: { segments: memory.segments } }),
        dirtyTracking: true,
      });
      if (kind.cacheInMemfd) {
        for (let chunk = 0; chunk < chunks; chunk++)
          region.store(chunk, (memory.segments[0] as Uint8Array).subarray(chunk * chunkSize));
      }
      const view = region.buffer;
      expect(region.scanDirty()).toEqual([]);

      // Reading the first half maps it (UFFDIO_COPY): fetched, not written.
      let sum = 0;
      for (let offset = 0; offset < size / 2; offset += PAGE) sum += view[offset] as number;
      expect(sum).toBe((size / 2 / PAGE) * 0x5a);
      expect(region.scanDirty()).toEqual([]);

      const random = testRandom();
      for (let round = 0; round < 3; round++) {
        const offsets: number[] = [];
        for (let i = 0; i < 200; i++) offsets.push(random.below(size)); // hits mapped and unmapped chunks
        for (let i = 0; i < 8; i++) offsets.push(round * 1024 * 1024 + i * PAGE + 17); // a contiguous run
        for (const offset of offsets) view[offset] = round + 1;
        const dirty = region.scanDirty();
        expect(dirty).toEqual(expectedRanges(offsets));
        expect(region.scanDirtyChunks()).toEqual([]); // re-protected by the scan
        expect(chunksOfRanges(dirty, chunkSize)).toEqual(
          [...new Set(offsets.map((offset) => Math.floor(offset / chunkSize)))].sort((a, b) => a - b),
        );
        for (const offset of offsets) expect(view[offset]).toBe(round + 1);
      }
      expect(region.stats().misses).toBe(0);
    },
  );

  it("a region without dirty tracking refuses to scan", () => {
    using region = UffdRegion.create({ size: 1 << 20, chunkSize: 1 << 16, onMiss: () => {} });
    expect(() => region.scanDirty()).toThrow(
      expect.objectContaining({ code: expect.stringMatching(/^ERR_/) }),
    );
  });
});
