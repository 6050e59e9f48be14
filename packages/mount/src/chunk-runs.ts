/** Runs of consecutive chunks, as `[first, count]`, in ascending order. */
export function runsOf(chunks: readonly number[]): [first: number, count: number][] {
  const sorted = [...new Set(chunks)].sort((a, b) => a - b);
  const runs: [number, number][] = [];
  for (const chunk of sorted) {
    const last = runs.at(-1);
    if (last && last[0] + last[1] === chunk) last[1]++;
    else runs.push([chunk, 1]);
  }
  return runs;
}
