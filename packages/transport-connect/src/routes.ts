import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import {
  type Backend,
  checkRange,
  type DigestSource,
  delay,
  digesterFor,
  Limiter,
  memoryView,
  type Progress,
  R3mapError,
  type ScatteredPiece,
} from "@r3map/core";
import { reserveAnswer } from "./call-limits.js";
import { algorithmFromWire, rangesFromWire, serveDigests } from "./digests.js";
import { toConnectError } from "./errors.js";
import { Seeder as SeederServiceDesc } from "./gen/migration/v1/seeder_pb.js";
import { Backend as BackendServiceDesc } from "./gen/mount/v1/backend_pb.js";
import { BackendService, Capability, MigrationService } from "./gen/r3map/v1/r3map_pb.js";
import {
  DEFAULT_MAX_REQUEST_BYTES,
  DEFAULT_SEEDER_CHUNK_SIZE,
  DEFAULT_STREAM_CHUNK_BYTES,
  MAX_REQUEST_BYTES_LIMIT,
  offsetFromWire,
  positiveInteger,
} from "./limits.js";
import type { Seeder } from "./seeder.js";

export interface ServeOptions {
  /** The resource to serve; defaults to the seeder's backend. */
  backend?: Backend;
  /** Serves the original Seeder service and MigrationService for this seeder. */
  seeder?: Seeder;
  /**
   * Largest length one ReadAt or WriteAt call may carry (default 32 MiB, the
   * original's MaxChunkSize). Larger calls fail with INVALID_ARGUMENT and
   * touch nothing; the original did not cap WriteAt, we do.
   */
  maxRequestBytes?: number;
  /** Preferred chunk size, reported by GetInfo and used for ReadStream pieces. */
  chunkSize?: number;
  /** Progress source for WatchProgress (defaults to the seeder's). */
  progress?: () => Progress;
  /**
   * Computes digests of the served bytes for `Digests` (a `DigestSource`).
   * Default: the backend's own (`Backend.digests`), else the digester
   * registered with core (`@r3map/native` registers native hashing when
   * loaded); `false` offers none.
   */
  digests?: DigestSource | false;
}

/** Digest requests computed at once; each already uses every core. */
const DIGEST_JOBS = 2;

/** Runs a handler body and turns whatever it throws into a typed ConnectError. */
async function guarded<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    throw toConnectError(error);
  }
}

function lengthWithinCap(length: number, cap: number, call: string): number {
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `${call} length must be a non-negative integer, got ${length}`,
    );
  }
  if (length > cap) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `${call} of ${length} bytes exceeds the server's per-call limit of ${cap} bytes; split the request`,
    );
  }
  return length;
}

/**
 * The bytes of a range for an answer: the backend's own memory when it lends
 * it (Connect copies them into the encoded message at once, so one copy of
 * three is saved), else a fresh buffer read from it.
 */
async function bytesOf(backend: Backend, offset: number, length: number): Promise<Uint8Array> {
  const lent = memoryView(backend, offset, length);
  if (lent) return lent;
  const data = new Uint8Array(length);
  await backend.readAt(data, offset);
  return data;
}

/** A range from the wire, checked against the resource. */
function rangeFromWire(backend: Backend, offset: bigint, length: bigint): [offset: number, length: number] {
  const start = offsetFromWire(offset);
  if (length > BigInt(backend.size)) {
    throw new R3mapError("ERR_OUT_OF_RANGE", `a range of ${length} bytes is larger than the resource`);
  }
  checkRange(backend.size, start, Number(length));
  return [start, Number(length)];
}

/** WriteScattered's pieces from the wire: ascending, not overlapping, inside the resource, at most `cap` bytes together. */
function scatteredFromWire(
  backend: Backend,
  pieces: ReadonlyArray<{ offset: bigint; data: Uint8Array }>,
  cap: number,
): ScatteredPiece[] {
  if (backend.readOnly) throw new R3mapError("ERR_READ_ONLY", "this resource is served read-only");
  lengthWithinCap(
    pieces.reduce((total, piece) => total + piece.data.length, 0),
    cap,
    "WriteScattered",
  );
  let end = 0;
  return pieces.map((piece) => {
    const offset = offsetFromWire(piece.offset);
    checkRange(backend.size, offset, piece.data.length);
    if (offset < end) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `WriteScattered pieces must be ascending and not overlap (at ${offset})`,
      );
    }
    end = offset + piece.data.length;
    return { offset, data: piece.data };
  });
}

/** A backend's optional operation, or ERR_NOT_SUPPORTED. */
function optional<F extends (...args: never[]) => unknown>(operation: F | undefined, name: string): F {
  if (!operation) throw new R3mapError("ERR_NOT_SUPPORTED", `the served backend does not support ${name}`);
  return operation;
}

/** The chunk index of each dirty offset, ascending and unique. */
function chunkIndexes(offsets: readonly number[], chunkSize: number): bigint[] {
  return [...new Set(offsets.map((offset) => Math.floor(offset / chunkSize)))]
    .sort((a, b) => a - b)
    .map(BigInt);
}

/**
 * Registers r3map's services on a Connect router: the original Backend service
 * and `r3map.v1.BackendService` for the backend; with a seeder, also the
 * original Seeder service and `r3map.v1.MigrationService`.
 */
export function r3mapRoutes(
  options: ServeOptions,
  shutdownSignal?: AbortSignal,
): (router: ConnectRouter) => void {
  const backend = options.backend ?? options.seeder?.backend;
  if (!backend)
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      "serve a backend or a seeder (options.backend or options.seeder)",
    );
  const cap = positiveInteger(options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES, "maxRequestBytes");
  // One message carries at most one payload, and Connect frames messages with a 32-bit length.
  if (cap > MAX_REQUEST_BYTES_LIMIT) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `maxRequestBytes must be at most 1 GiB, got ${cap}`);
  }
  const seeder = options.seeder;
  const seederChunk = positiveInteger(seeder?.chunkSize ?? DEFAULT_SEEDER_CHUNK_SIZE, "seeder chunk size");
  const chunkSize = positiveInteger(
    options.chunkSize ?? (seeder ? seederChunk : DEFAULT_STREAM_CHUNK_BYTES),
    "chunkSize",
  );
  const progress = options.progress ?? (seeder?.progress ? () => seeder.progress!() : undefined);
  const digests = options.digests === false ? undefined : (options.digests ?? digesterFor(backend));
  const digestJobs = new Limiter(DIGEST_JOBS);

  const readAt = (length: number, off: bigint, context: HandlerContext) =>
    guarded(async () => {
      // The answer is held up to three times while it is encoded: the data, the message, its envelope.
      reserveAnswer(context, 3 * lengthWithinCap(length, cap, "ReadAt"), "ReadAt");
      const data = await bytesOf(backend, offsetFromWire(off), length);
      return { N: data.length, P: data };
    });

  // Streams end when the client goes or the server shuts down; unary calls
  // are left to finish during a graceful close.
  const streamSignal = (context: HandlerContext) =>
    shutdownSignal ? AbortSignal.any([context.signal, shutdownSignal]) : context.signal;

  const finalRound = () => (seeder!.finalize ? seeder!.finalize() : seeder!.sync());

  return (router) => {
    router.service(BackendServiceDesc, {
      readAt: (request, context) => readAt(request.Length, request.Off, context),
      writeAt: (request) =>
        guarded(async () => {
          lengthWithinCap(request.P.length, cap, "WriteAt");
          await backend.writeAt(request.P, offsetFromWire(request.Off));
          return { Length: request.P.length };
        }),
      sync: () => guarded(async () => backend.sync().then(() => ({}))),
    });

    router.service(BackendService, {
      getInfo: () =>
        guarded(async () => {
          const capabilities = [Capability.READ_STREAM];
          if (progress) capabilities.push(Capability.PROGRESS);
          if (seeder) capabilities.push(Capability.MIGRATION);
          if (backend.readOnly) capabilities.push(Capability.READ_ONLY);
          if (backend.trim) capabilities.push(Capability.TRIM);
          if (backend.writeZeroes) capabilities.push(Capability.WRITE_ZEROES);
          if (backend.blockStatus) capabilities.push(Capability.BLOCK_STATUS);
          if (backend.byteRanges) capabilities.push(Capability.BYTE_RANGES);
          if (digests) capabilities.push(Capability.DIGESTS);
          if (!backend.readOnly) capabilities.push(Capability.WRITE_SCATTERED);
          return { size: BigInt(backend.size), maxRequestBytes: cap, chunkSize, capabilities };
        }),
      readStream: (request, context) => {
        const piece = Math.min(request.chunkSize || chunkSize, cap);
        // One piece waiting to be sent while the next is read and encoded (three copies).
        reserveAnswer(context, 4 * piece, "ReadStream");
        return readStream(backend, request.offset, request.length, piece, streamSignal(context));
      },
      digests: (request, context) =>
        streamDigests(
          digests,
          digestJobs,
          backend.size,
          cap,
          { chunkSize: request.chunkSize, algorithm: request.algorithm, ranges: request.ranges },
          streamSignal(context),
        ),
      writeScattered: (request) =>
        guarded(async () => {
          const pieces = scatteredFromWire(backend, request.pieces, cap);
          // Pieces do not overlap: they may land in any order.
          await Promise.all(pieces.map((piece) => backend.writeAt(piece.data, piece.offset)));
          return { written: BigInt(pieces.reduce((total, piece) => total + piece.data.length, 0)) };
        }),
      watchProgress: (request, context) => watchProgress(progress, request.intervalMs, streamSignal(context)),
      trim: (request) =>
        guarded(async () => {
          const [offset, length] = rangeFromWire(backend, request.offset, request.length);
          await optional(backend.trim?.bind(backend), "Trim")(offset, length);
          return {};
        }),
      writeZeroes: (request) =>
        guarded(async () => {
          const [offset, length] = rangeFromWire(backend, request.offset, request.length);
          await optional(backend.writeZeroes?.bind(backend), "WriteZeroes")(offset, length);
          return {};
        }),
      blockStatus: (request) =>
        guarded(async () => {
          const [offset, length] = rangeFromWire(backend, request.offset, request.length);
          const extents = await optional(backend.blockStatus?.bind(backend), "BlockStatus")(offset, length);
          return {
            extents: extents.map((e) => ({
              offset: BigInt(e.offset),
              length: BigInt(e.length),
              zero: e.zero,
              hole: e.hole,
            })),
          };
        }),
    });

    if (!seeder) return;
    router.service(SeederServiceDesc, {
      readAt: (request, context) => readAt(request.Length, request.Off, context),
      track: () => guarded(async () => seeder.track()).then(() => ({})),
      // The original's Sync is the last round: suspend, flush, report, stop tracking.
      sync: () => guarded(async () => ({ DirtyOffsets: (await finalRound()).map(BigInt) })),
      close: () => guarded(async () => seeder.close()).then(() => ({})),
    });
    router.service(MigrationService, {
      track: (request) =>
        guarded(async () => {
          await seeder.track(request.session || undefined);
          const data = seeder.dataPlane;
          return {
            chunkSize: seederChunk,
            size: BigInt(backend.size),
            ...(data ? { nbdPort: data.nbdPort, nbdExport: data.nbdExport, nbdTls: data.tls ?? false } : {}),
          };
        }),
      sync: () =>
        guarded(async () => ({
          chunkSize: seederChunk,
          dirtyChunks: chunkIndexes(await seeder.sync(), seederChunk),
        })),
      finalize: () =>
        guarded(async () => ({
          chunkSize: seederChunk,
          dirtyChunks: chunkIndexes(await finalRound(), seederChunk),
        })),
      close: () => guarded(async () => seeder.close()).then(() => ({})),
      attach: (request, context) =>
        attach(seeder, request.intervalMs, request.session || undefined, streamSignal(context)),
    });
  };
}

/** Heartbeats to an attached leecher until its stream ends, which the seeder hears of. */
async function* attach(seeder: Seeder, intervalMs: number, resume: string | undefined, signal: AbortSignal) {
  let session: string;
  try {
    session = seeder.attach?.(signal, resume) ?? "";
  } catch (error) {
    throw toConnectError(error);
  }
  const interval = Math.max(MIN_PROGRESS_INTERVAL_MS, intervalMs || 1000);
  while (!signal.aborted) {
    yield { phase: seeder.phase?.() ?? "tracking", session };
    await delay(interval, signal).catch(() => undefined);
  }
}

async function* readStream(
  backend: Backend,
  from: bigint,
  length: bigint,
  piece: number,
  signal: AbortSignal,
) {
  try {
    const [start, count] = rangeFromWire(backend, from, length);
    const end = start + count;
    for (let offset = start; offset < end; offset += piece) {
      // A cancelled or timed-out call stops here instead of reading the rest.
      if (signal.aborted) return;
      yield { offset: BigInt(offset), data: await bytesOf(backend, offset, Math.min(piece, end - offset)) };
    }
  } catch (error) {
    throw toConnectError(error);
  }
}

async function* streamDigests(
  source: DigestSource | undefined,
  jobs: Limiter,
  size: number,
  maxMessageBytes: number,
  wire: { chunkSize: number; algorithm: number; ranges: ReadonlyArray<{ first: bigint; end: bigint }> },
  signal: AbortSignal,
) {
  try {
    if (!source) throw new R3mapError("ERR_NOT_SUPPORTED", "this server does not compute digests");
    const request = {
      algorithm: algorithmFromWire(wire.algorithm),
      chunkSize: wire.chunkSize,
      ranges: rangesFromWire(wire.ranges),
    };
    // Each batch waits for a slot: a batch already uses every core.
    const limited: DigestSource = (part, options) => jobs.run(() => source(part, options), options?.signal);
    yield* serveDigests(limited, request, size, maxMessageBytes, signal);
  } catch (error) {
    throw toConnectError(error);
  }
}

const MIN_PROGRESS_INTERVAL_MS = 50;

async function* watchProgress(
  progress: (() => Progress) | undefined,
  intervalMs: number,
  signal: AbortSignal,
) {
  if (!progress)
    throw toConnectError(new R3mapError("ERR_NOT_SUPPORTED", "this server has no progress to report"));
  const interval = Math.max(MIN_PROGRESS_INTERVAL_MS, intervalMs || 1000);
  while (!signal.aborted) {
    const p = progress();
    yield {
      progress: {
        chunksTotal: BigInt(p.chunksTotal),
        chunksLocal: BigInt(p.chunksLocal),
        bytesPulled: BigInt(p.bytesPulled),
        bytesPushed: BigInt(p.bytesPushed),
        dirtyChunks: BigInt(p.dirtyChunks),
        fetches: BigInt(p.fetches),
        meanFetchMs: p.meanFetchMs,
      },
    };
    // Ends quietly when the client cancels or the server shuts down.
    await delay(interval, signal).catch(() => undefined);
  }
}
