import { closeSync, constants as fsConstants, openSync } from "node:fs";
import { availableParallelism } from "node:os";
import {
  type Backend,
  ChunkLayout,
  checkDigestRequest,
  type DigestAlgorithm,
  DigestList,
  type DigestRequest,
  type DigestSource,
  digestBytes,
  FileBackend,
  fromSystemError,
  MemoryBackend,
  memoryView,
  R3mapError,
  registerDigester,
  requestSpans,
} from "@r3map/core";
import { addon } from "./addon.js";

/** Where the bytes to hash are. */
export type DigestTarget =
  /** A regular file or block device: a path (opened read-only here) or an open fd. */
  | { path: string }
  | { fd: number }
  /** Memory laid end to end (a `MemoryBackend`'s segments, a Buffer, a region's view). */
  | { memory: Uint8Array | readonly Uint8Array[] };

export interface DigestOptions {
  algorithm?: DigestAlgorithm;
  /** Native threads to hash on (default: one per core). */
  threads?: number;
  /**
   * Read a file or block device with O_DIRECT (offsets and chunk size must be
   * multiples of 4096): a cold device is hashed without evicting the page
   * cache. Default: buffered reads, which also see what other processes wrote
   * but did not sync.
   */
  direct?: boolean;
  signal?: AbortSignal;
}

const ALGORITHM_CODE: Record<DigestAlgorithm, number> = { "xxh3-128": 0, blake3: 1 };

/**
 * Per-chunk digests of chunks `[first, end)` of each range of `request`, for
 * a resource of `size` bytes at `target`, computed on native threads (one per
 * core by default; never the libuv threadpool nor this thread). XXH3-128 comes
 * from libxxhash, BLAKE3 from its official C implementation, both with their
 * SIMD code picked at run time; digests are in canonical byte order, as
 * `xxhsum -H2` and `b3sum` print them.
 *
 * ```js
 * import { ChunkLayout, DigestList } from "@r3map/core";
 * const size = fs.statSync("disk.img").size;
 * const layout = new ChunkLayout(size, 64 * 1024);
 * const list = await digestChunks({ path: "disk.img" }, size, {
 *   algorithm: "xxh3-128", chunkSize: layout.chunkSize, ranges: DigestList.whole(layout),
 * });
 * list.hex(0); // the first 64 KiB's XXH3-128
 * ```
 */
export async function digestChunks(
  target: DigestTarget,
  size: number,
  request: DigestRequest,
  options: DigestOptions = {},
): Promise<DigestList> {
  checkDigestRequest(request, size);
  const spans = requestSpans(request, size);
  const count = spans.reduce((total, [, length]) => total + Math.ceil(length / request.chunkSize), 0);
  const out = new Uint8Array(count * digestBytes(request.algorithm));
  if (count > 0) {
    await hash(target, spans, out, request.chunkSize, request.algorithm, options);
  }
  return new DigestList(request.algorithm, request.chunkSize, request.ranges, out);
}

/** Digests of every chunk of a resource of `size` bytes at `chunkSize`. */
export function digestWhole(
  target: DigestTarget,
  size: number,
  chunkSize: number,
  options: DigestOptions = {},
): Promise<DigestList> {
  const layout = new ChunkLayout(size, chunkSize);
  return digestChunks(
    target,
    size,
    { algorithm: options.algorithm ?? "xxh3-128", chunkSize, ranges: DigestList.whole(layout) },
    options,
  );
}

async function hash(
  target: DigestTarget,
  spans: Array<[number, number]>,
  out: Uint8Array,
  chunkSize: number,
  algorithm: DigestAlgorithm,
  options: DigestOptions,
): Promise<void> {
  const threads = options.threads ?? availableParallelism();
  if (!Number.isSafeInteger(threads) || threads < 1) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `threads must be a positive integer, got ${threads}`);
  }
  if (options.signal?.aborted) throw aborted();
  const cancel = new Int32Array(new SharedArrayBuffer(4));
  const onAbort = () => Atomics.store(cancel, 0, 1);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const common = {
    spans: new Float64Array(spans.flat()),
    chunkSize,
    algorithm: ALGORITHM_CODE[algorithm],
    threads,
    out,
    cancel,
  };
  let opened: number | undefined;
  try {
    if ("memory" in target) {
      const segments = target.memory instanceof Uint8Array ? [target.memory] : [...target.memory];
      await addon().digestChunks({ ...common, segments });
      return;
    }
    let fd: number;
    if ("path" in target) {
      opened = openPath(target.path, options.direct === true);
      fd = opened;
    } else {
      fd = target.fd;
    }
    if (options.direct === true && "fd" in target) {
      // O_DIRECT is a property of the open file: reopen it so.
      opened = openPath(`/proc/self/fd/${target.fd}`, true);
      fd = opened;
    }
    await addon().digestChunks({ ...common, fd, direct: options.direct === true });
  } catch (error) {
    if ((error as { code?: unknown }).code === "ECANCELED") throw aborted();
    if ((error as { code?: unknown }).code === "ERR_INVALID_ARGUMENT") {
      throw new R3mapError("ERR_INVALID_ARGUMENT", (error as Error).message);
    }
    if ((error as { code?: unknown }).code === "ENODATA") {
      throw new R3mapError(
        "ERR_OUT_OF_RANGE",
        "the file ended before the range to digest did (was it truncated meanwhile?)",
        { cause: error },
      );
    }
    throw fromSystemError(error, "cannot digest");
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    if (opened !== undefined) closeSync(opened);
  }
}

function aborted(): R3mapError {
  return new R3mapError("ERR_ABORTED", "digesting was aborted");
}

function openPath(path: string, direct: boolean): number {
  try {
    return openSync(path, fsConstants.O_RDONLY | (direct ? fsConstants.O_DIRECT : 0));
  } catch (error) {
    throw fromSystemError(error, `cannot open ${path} to digest it`);
  }
}

/** Bytes read from a backend per step when it has no memory or file native code can read. */
const READ_STEP_BYTES = 8 * 1024 * 1024;

/**
 * Computes digests of `backend`'s own bytes: natively from its memory or file
 * when it is a `MemoryBackend` or `FileBackend` (nothing enters JavaScript),
 * otherwise by reading it through `readAt` in steps of a few MiB and hashing
 * each step natively. What a server uses to answer digest requests for the
 * backend it serves; registered as core's digester when this package loads.
 */
export function backendDigester(backend: Backend, options: Omit<DigestOptions, "signal"> = {}): DigestSource {
  return async (request, call = {}) => {
    const perCall = { ...options, ...(call.signal ? { signal: call.signal } : {}) };
    if (backend instanceof MemoryBackend) {
      return (await digestChunks({ memory: backend.segments }, backend.size, request, perCall)).bytes;
    }
    if (backend instanceof FileBackend) {
      return (await digestChunks({ fd: backend.fd }, backend.size, request, perCall)).bytes;
    }
    return readAndDigest(backend, request, perCall);
  };
}

async function readAndDigest(
  backend: Backend,
  request: DigestRequest,
  options: DigestOptions,
): Promise<Uint8Array> {
  checkDigestRequest(request, backend.size);
  const parts: Uint8Array[] = [];
  // Steps of whole chunks (at least one), so a chunk is never cut between two steps.
  const stepChunks = Math.max(1, Math.floor(READ_STEP_BYTES / request.chunkSize));
  for (const range of request.ranges) {
    for (let first = range.first; first < range.end; first += stepChunks) {
      if (options.signal?.aborted) throw aborted();
      const end = Math.min(range.end, first + stepChunks);
      const offset = first * request.chunkSize;
      const length = Math.min(backend.size, end * request.chunkSize) - offset;
      let bytes = memoryView(backend, offset, length);
      if (!bytes) {
        bytes = new Uint8Array(length);
        await backend.readAt(bytes, offset);
      }
      const list = await digestChunks(
        { memory: bytes },
        length,
        {
          algorithm: request.algorithm,
          chunkSize: request.chunkSize,
          ranges: [{ first: 0, end: end - first }],
        },
        options,
      );
      parts.push(list.bytes);
    }
  }
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

registerDigester((backend) => backendDigester(backend));
