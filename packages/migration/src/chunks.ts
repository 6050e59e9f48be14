/**
 * Translates chunk indexes from one chunk size to another: every chunk here
 * that overlaps a chunk there (a seeder may track at a different chunk size
 * than its leecher caches at). Ascending, without duplicates.
 */
export function toLocalChunks(
  chunks: readonly number[],
  fromChunkSize: number,
  toChunkSize: number,
  size: number,
): number[] {
  if (fromChunkSize === toChunkSize) return [...new Set(chunks)].sort((a, b) => a - b);
  const local = new Set<number>();
  for (const chunk of chunks) {
    const start = chunk * fromChunkSize;
    const end = Math.min(size, start + fromChunkSize);
    for (let c = Math.floor(start / toChunkSize); c * toChunkSize < end; c++) local.add(c);
  }
  return [...local].sort((a, b) => a - b);
}
