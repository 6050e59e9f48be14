import { R3mapError } from "@r3map/core";

/** The original r3map's per-call cap on ReadAt lengths (`MaxChunkSize`), 32 MiB. */
export const DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024;

/** The largest per-call limit a server may set. */
export const MAX_REQUEST_BYTES_LIMIT = 1024 * 1024 * 1024;

/** Room for a message's framing and other fields next to its payload. */
export const MESSAGE_OVERHEAD_BYTES = 64 * 1024;

/** The chunk size the original seeder used when none was given. */
export const DEFAULT_SEEDER_CHUNK_SIZE = 4096;

/** Pieces a ReadStream is sent in when neither side names a chunk size. */
export const DEFAULT_STREAM_CHUNK_BYTES = 1024 * 1024;

/** Checks a byte count from an option or a URI: a positive safe integer. */
export function positiveInteger(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `${what} must be a positive integer, got ${value}`);
  }
  return value;
}

/** An offset from the wire (int64) as a number, refusing what no backend can hold. */
export function offsetFromWire(offset: bigint | number): number {
  if (offset < 0) throw new R3mapError("ERR_INVALID_ARGUMENT", `offset must be non-negative, got ${offset}`);
  if (offset > Number.MAX_SAFE_INTEGER) {
    throw new R3mapError("ERR_OUT_OF_RANGE", `offset ${offset} is past the end of any resource`);
  }
  return Number(offset);
}
