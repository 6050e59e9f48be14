/** A written byte range reported by dirty tracking, relative to the region start. */
export interface DirtyRange {
  offset: number;
  length: number;
}

/** Converts PAGEMAP_SCAN's [start, end) pairs into ranges. */
export function dirtyRangesFromPairs(pairs: Float64Array): DirtyRange[] {
  const ranges: DirtyRange[] = [];
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const start = pairs[i] as number;
    ranges.push({ offset: start, length: (pairs[i + 1] as number) - start });
  }
  return ranges;
}

/** The chunk indexes that the ranges touch, ascending and without repeats. */
export function chunksOfRanges(ranges: readonly DirtyRange[], chunkSize: number): number[] {
  const chunks: number[] = [];
  for (const { offset, length } of ranges) {
    const first = Math.floor(offset / chunkSize);
    const last = Math.floor((offset + length - 1) / chunkSize);
    for (let chunk = first; chunk <= last; chunk++) {
      if (chunks.length === 0 || (chunks[chunks.length - 1] as number) < chunk) chunks.push(chunk);
    }
  }
  return chunks;
}
