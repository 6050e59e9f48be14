import { type Backend, R3mapError, type ScatteredPiece, type TransferPlan } from "@r3map/core";

export interface TransferOptions {
  /** Requests in flight at once (default 32: enough to fill a link at tens of ms of RTT). */
  concurrency?: number;
  /** Consecutive chunks are moved together up to this many bytes per request (default 1 MiB). */
  requestBytes?: number;
  /**
   * To a destination that takes scattered writes (`Backend.writeScattered`),
   * ranges are sent together up to this many bytes per request (default 4 MiB).
   */
  batchBytes?: number;
  signal?: AbortSignal;
  /** Called after each range is written. */
  onMoved?: (bytes: number) => void;
}

/**
 * Copies the plan's chunks from one backend to the other: each range is read
 * from `from` and written to `to`, `concurrency` requests at a time — many
 * ranges per request where `to` takes scattered writes (a remote served by
 * r3map: a few calls instead of one per scattered chunk). The destination is
 * not synced here (the caller flushes once, at the end).
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
  const scattered = to.writeScattered?.bind(to);
  const batchBytes = options.batchBytes ?? 4 * 1024 * 1024;
  const worker = async () => {
    try {
      for (;;) {
        if (options.signal?.aborted) throw new R3mapError("ERR_ABORTED", "the sync was aborted");
        // A destination that takes scattered writes gets many ranges per request.
        const batch: ScatteredPiece[] = [];
        let bytes = 0;
        for (let next = ranges.next(); !next.done && !failed; next = ranges.next()) {
          const [offset, length] = next.value;
          const data = new Uint8Array(length);
          await from.readAt(data, offset);
          batch.push({ offset, data });
          bytes += length;
          if (!scattered || bytes >= batchBytes) break;
        }
        if (batch.length === 0) return;
        if (scattered) await scattered(batch);
        else await to.writeAt(batch[0]!.data, batch[0]!.offset);
        moved += bytes;
        options.onMoved?.(bytes);
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
