/**
 * `BackendService.Digests` on both sides: the server hashes its own copy and
 * streams the digests in batches; the client splits large requests and
 * reassembles the stream, checking that it is whole and in order.
 */
import {
  type ChunkRange,
  checkDigestRequest,
  type DigestAlgorithm,
  type DigestRequest,
  type DigestSource,
  digestBytes,
  R3mapError,
} from "@r3map/core";
import { DigestAlgorithm as WireAlgorithm } from "./gen/r3map/v1/r3map_pb.js";

/** Most chunks one Digests call may ask for (32 MiB of XXH3-128 digests); clients split larger requests. */
export const MAX_DIGEST_CHUNKS = 2 * 1024 * 1024;

/**
 * Bytes of the resource one client call covers at most: a call has a deadline
 * (the caller's timeout), and hashing a gigabyte takes about a second from
 * memory, some seconds from a disk.
 */
const CALL_DATA_BYTES = 1024 * 1024 * 1024;

/** Chunks whose digests go out in one message (1 MiB of XXH3-128 digests), capped by the message limit. */
const BATCH_CHUNKS = 64 * 1024;

export function algorithmToWire(algorithm: DigestAlgorithm): WireAlgorithm {
  return algorithm === "blake3" ? WireAlgorithm.BLAKE3 : WireAlgorithm.XXH3_128;
}

export function algorithmFromWire(algorithm: WireAlgorithm): DigestAlgorithm {
  if (algorithm === WireAlgorithm.XXH3_128) return "xxh3-128";
  if (algorithm === WireAlgorithm.BLAKE3) return "blake3";
  throw new R3mapError(
    "ERR_INVALID_ARGUMENT",
    `unknown digest algorithm ${algorithm}; use XXH3_128 or BLAKE3`,
  );
}

/** Ranges from the wire (uint64) as numbers. */
export function rangesFromWire(ranges: ReadonlyArray<{ first: bigint; end: bigint }>): ChunkRange[] {
  return ranges.map(({ first, end }) => {
    if (first > BigInt(Number.MAX_SAFE_INTEGER) || end > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new R3mapError(
        "ERR_OUT_OF_RANGE",
        `chunk range [${first}, ${end}) is past the end of any resource`,
      );
    }
    return { first: Number(first), end: Number(end) };
  });
}

/** The first `count` chunks of `ranges` from chunk position `skip` on, as ranges. */
export function sliceRanges(ranges: readonly ChunkRange[], skip: number, count: number): ChunkRange[] {
  const out: ChunkRange[] = [];
  let position = 0;
  for (const { first, end } of ranges) {
    const length = end - first;
    if (count <= 0) break;
    if (position + length > skip) {
      const start = first + Math.max(0, skip - position);
      const stop = Math.min(end, start + count);
      out.push({ first: start, end: stop });
      count -= stop - start;
    }
    position += length;
  }
  return out;
}

/**
 * The server's answer: digests from `source` for a checked request, in
 * batches of whole messages no larger than `maxMessageBytes`.
 */
export async function* serveDigests(
  source: DigestSource,
  request: DigestRequest,
  size: number,
  maxMessageBytes: number,
  signal: AbortSignal,
): AsyncGenerator<{ index: bigint; digests: Uint8Array }> {
  const total = checkDigestRequest(request, size, MAX_DIGEST_CHUNKS);
  const batch = Math.max(
    1,
    Math.min(BATCH_CHUNKS, Math.floor(maxMessageBytes / digestBytes(request.algorithm))),
  );
  for (let index = 0; index < total; index += batch) {
    if (signal.aborted) return;
    const ranges = sliceRanges(request.ranges, index, batch);
    const digests = await source({ ...request, ranges }, { signal });
    yield { index: BigInt(index), digests };
  }
}

/**
 * The client's side: asks in calls of at most `MAX_DIGEST_CHUNKS` chunks and a
 * gigabyte of data each, and puts the streamed batches together, checking
 * each continues the last.
 */
export async function collectDigests(
  request: DigestRequest,
  size: number,
  call: (part: DigestRequest) => AsyncIterable<{ index: bigint; digests: Uint8Array }>,
): Promise<Uint8Array> {
  const total = checkDigestRequest(request, size);
  const width = digestBytes(request.algorithm);
  const out = new Uint8Array(total * width);
  const perCall = Math.max(1, Math.min(MAX_DIGEST_CHUNKS, Math.floor(CALL_DATA_BYTES / request.chunkSize)));
  for (let start = 0; start < total; start += perCall) {
    const count = Math.min(perCall, total - start);
    const part = { ...request, ranges: sliceRanges(request.ranges, start, count) };
    let next = 0;
    for await (const message of call(part)) {
      if (
        Number(message.index) !== next ||
        message.digests.length % width !== 0 ||
        next * width + message.digests.length > count * width
      ) {
        throw new R3mapError(
          "ERR_PROTOCOL",
          `Digests sent ${message.digests.length} bytes for position ${message.index}, expected position ${next}`,
        );
      }
      out.set(message.digests, (start + next) * width);
      next += message.digests.length / width;
    }
    if (next !== count) {
      throw new R3mapError("ERR_PROTOCOL", `Digests ended after ${next} of ${count} digests`);
    }
  }
  return out;
}
