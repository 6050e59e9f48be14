import {
  type Backend,
  type ChunkBitmap,
  type ChunkRange,
  DigestList,
  diffDigests,
  FileBackend,
  TransferPlan,
} from "@r3map/core";
import { digestChunks } from "@r3map/native";

/** What a warm start found. */
export interface WarmStartResult {
  /** Chunks compared (those not already present). */
  compared: number;
  /** Chunks whose cached bytes equal the remote's, now present: they are not pulled. */
  kept: number;
  /** Why nothing was compared, when nothing was. */
  skipped?: string;
}

/**
 * A managed cache left by an earlier run (a file) holds a stale copy: compares
 * the digests of each chunk not yet present — computed natively here, and by
 * the server on its own copy — and marks every chunk whose bytes are the
 * remote's present, before the pull starts. Only the chunks that differ are
 * then pulled. Bits are only ever set: chunks already present (a persisted
 * chunk state's, which may hold changes not pushed yet) are left as they are.
 */
export async function warmStart(
  digestsFrom: Backend,
  local: Backend,
  presence: ChunkBitmap,
  chunkSize: number,
  size: number,
): Promise<WarmStartResult> {
  if (!(local instanceof FileBackend)) return { compared: 0, kept: 0, skipped: "the cache is not a file" };
  if (!digestsFrom.digests) return { compared: 0, kept: 0, skipped: "the remote cannot compute digests" };
  const missing: number[] = [];
  for (let chunk = 0; chunk < presence.count; chunk++) if (!presence.has(chunk)) missing.push(chunk);
  const ranges: ChunkRange[] = [...TransferPlan.fromChunks(size, chunkSize, missing).runs];
  if (ranges.length === 0) return { compared: 0, kept: 0 };
  const request = { algorithm: "xxh3-128" as const, chunkSize, ranges };
  const [mine, theirs] = await Promise.all([
    digestChunks({ fd: local.fd }, size, request),
    digestsFrom.digests(request),
  ]);
  const differing = new Set(
    diffDigests(size, mine, new DigestList("xxh3-128", chunkSize, ranges, theirs)).chunkIndexes(),
  );
  let kept = 0;
  for (const chunk of missing) {
    if (!differing.has(chunk) && presence.set(chunk)) kept++;
  }
  return { compared: missing.length, kept };
}
