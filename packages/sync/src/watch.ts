import {
  ChunkLayout,
  DigestList,
  delay,
  diffDigests,
  TransferPlan as Plan,
  R3mapError,
  type TransferPlan,
} from "@r3map/core";
import type { DirtyRange } from "@r3map/native";
import { type DeltaSyncOptions, type SyncReport, syncDelta } from "./delta-sync.js";
import type { SyncSide } from "./resource.js";
import { copyPlan } from "./transfer.js";

/**
 * Where a live copy's changes come from between two rounds of continuous
 * replication. `start()` runs before the first full sync, so anything
 * changed before it is covered by that sync and anything after by a round.
 */
export interface ChangeSource {
  /** How changes are found, for reports: "digests", "dirty pages", "mount tracking". */
  readonly kind: string;
  start(): Promise<void> | void;
  /** What changed since `start` or the previous call. */
  take(): Promise<TransferPlan> | TransferPlan;
}

/**
 * Changes found by comparing the copy's digests with those of the previous
 * round (a file written by anyone: no other record of its writes exists).
 * Each round hashes the whole copy, natively, at `chunkSize`.
 */
export function digestChanges(local: SyncSide, chunkSize: number, signal?: AbortSignal): ChangeSource {
  const size = local.backend.size;
  const ranges = DigestList.whole(new ChunkLayout(size, chunkSize));
  const request = { algorithm: "xxh3-128" as const, chunkSize, ranges };
  let previous: DigestList | undefined;
  const digest = async () =>
    new DigestList("xxh3-128", chunkSize, ranges, await local.digests(request, signal ? { signal } : {}));
  return {
    kind: "digests",
    start: async () => {
      previous = await digest();
    },
    take: async () => {
      const current = await digest();
      if (!previous) throw new R3mapError("ERR_INVALID_ARGUMENT", "start() the change source first");
      const plan = diffDigests(size, previous, current);
      previous = current;
      return plan;
    },
  };
}

/**
 * Changes from write-protect dirty tracking (a userfaultfd region with
 * `dirtyTracking`: `() => region.scanDirty()`): the pages written since the
 * previous scan, which the scan protects again. No hashing at all.
 */
export function dirtyPageChanges(size: number, scan: () => DirtyRange[], pageSize = 4096): ChangeSource {
  const pages = (): TransferPlan => {
    const chunks: number[] = [];
    for (const { offset, length } of scan()) {
      for (let page = Math.floor(offset / pageSize); page * pageSize < offset + length; page++)
        chunks.push(page);
    }
    return Plan.fromChunks(size, pageSize, chunks);
  };
  return {
    kind: "dirty pages",
    // Clears what was written before: the first full sync covers it.
    start: () => void pages(),
    take: pages,
  };
}

/**
 * Changes a mount records itself (`MountEngine.trackWrites` /
 * `takeTrackedWrites`: every write path — the engine's stages, native FUSE
 * writes, a slice's dirty pages), at the mount's chunk size.
 */
export function trackedChanges(
  size: number,
  mount: { chunkSize: number; trackWrites(): void; takeTrackedWrites(): number[] },
): ChangeSource {
  return {
    kind: "mount tracking",
    start: () => mount.trackWrites(),
    take: () => Plan.fromChunks(size, mount.chunkSize, mount.takeTrackedWrites()),
  };
}

export interface ReplicateOptions extends DeltaSyncOptions {
  /** Time between rounds (milliseconds). */
  intervalMs: number;
  /** Stops after one last round. */
  signal: AbortSignal;
  /** The first full sync is done. */
  onSynced?: (report: SyncReport) => void;
  /** A round is done (also when nothing changed). */
  onRound?: (round: ReplicationRound) => void;
}

export interface ReplicationRound {
  round: number;
  chunks: number;
  bytes: number;
  ms: number;
  /** The last round, after the signal aborted. */
  final: boolean;
}

/**
 * Continuous replication of a live copy to a standby: one delta sync, then
 * every `intervalMs` the changes `changes` reports are pushed and the remote
 * is synced. When `signal` aborts, one last round runs, so the remote ends
 * equal to what the copy held then. A failed round rejects (the remote keeps
 * what it had; run again to resume).
 *
 * ```js
 * const region = UffdRegion.create({ size, chunkSize, dirtyTracking: true, ... });
 * await replicate(memorySide(region.buffer), remoteSide(remote),
 *   dirtyPageChanges(size, () => region.scanDirty()), { intervalMs: 1000, signal });
 * ```
 */
export async function replicate(
  local: SyncSide,
  remote: SyncSide,
  changes: ChangeSource,
  options: ReplicateOptions,
): Promise<void> {
  if (!Number.isSafeInteger(options.intervalMs) || options.intervalMs <= 0) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `intervalMs must be a positive integer, got ${options.intervalMs}`,
    );
  }
  const { signal, ...syncOptions } = options;
  await changes.start();
  options.onSynced?.(await syncDelta(local, remote, syncOptions));
  for (let round = 1; ; round++) {
    const final = await delay(options.intervalMs, signal).then(
      () => false,
      () => true,
    );
    const started = performance.now();
    const plan = await changes.take();
    const bytes = await copyPlan(local.backend, remote.backend, plan, {
      ...(options.concurrency ? { concurrency: options.concurrency } : {}),
      ...(options.requestBytes ? { requestBytes: options.requestBytes } : {}),
    });
    await remote.backend.sync();
    options.onRound?.({ round, chunks: plan.chunks, bytes, ms: performance.now() - started, final });
    if (final) return;
  }
}
