import { type Backend, R3mapError, type TransferPlan } from "@r3map/core";

export interface TransferOptions {
  /** Requests in flight at once (default 32: enough to fill a link at tens of ms of RTT). */
  concurrency?: number;
  /** Consecutive chunks are moved together up to this many bytes per request (default 1 MiB). */
  requestBytes?: number;
  signal?: AbortSignal;
  /** Called after each range is written. */
  onMoved?: (bytes: number) => void;
}

/**
 * Copies the plan's chunks from one backend to the other: each range is read
 * from `from` and written to `to`, `concurrency` at a time. The destination
 * is not synced here (the caller flushes once, at the end).
 */
export async function copyPlan(
  from: Backend,
  to: Backend,
  plan: TransferPlan,
  options: TransferOptions = {},
): Promise<number> {
  const concurrency = options.concurrency ?? 32;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `concurrency must be a positive integer, got ${concurrency}`,
    );
  }
  const ranges = plan.byteRanges(options.requestBytes ?? 1024 * 1024);
  let moved = 0;
  let failed = false;
  const worker = async () => {
    try {
      for (let next = ranges.next(); !next.done && !failed; next = ranges.next()) {
        if (options.signal?.aborted) throw new R3mapError("ERR_ABORTED", "the sync was aborted");
        const [offset, length] = next.value;
        const buffer = new Uint8Array(length);
        await from.readAt(buffer, offset);
        await to.writeAt(buffer, offset);
        moved += length;
        options.onMoved?.(length);
      }
    } catch (error) {
      // The other workers stop at their next range rather than write on after a failure.
      failed = true;
      throw error;
    }
  };
  // Workers share one generator: each takes the next range when it is free.
  await Promise.all(Array.from({ length: concurrency }, worker));
  return moved;
}
