/**
 * The addon's userfaultfd, pagemap and mmap exports (uffd_region.cc,
 * pagemap_scan.cc, mmap_file.cc), typed, and the conversion of the errors they
 * throw into R3mapError.
 */
import { createRequire } from "node:module";
import { type ErrorCode, R3mapError } from "@r3map/core";
import { addon } from "./addon.js";

export interface NativeUffdRegionOptions {
  size: number;
  chunkSize: number;
  memfd?: boolean;
  continue?: boolean;
  dirty?: boolean;
  serve?: boolean;
  presence?: Int32Array | Uint32Array | Uint8Array;
  inFlight?: Int32Array | Uint32Array | Uint8Array;
  segments?: readonly Uint8Array[];
  cacheFd?: number;
  cacheOffset?: number;
  onMiss?: (chunk: number) => void;
  adopt?: { pid: number; fd: number; address: number };
}

export interface UffdStats {
  /** Page-fault messages the handler read (several may hit one chunk). */
  faults: number;
  /** Chunks resolved from the local cache without calling JavaScript. */
  resolvedNatively: number;
  /** Chunks handed to JavaScript (`onMiss` calls). */
  misses: number;
  /** Chunks poisoned because `onMiss` failed (their readers got SIGBUS). */
  failed: number;
  /** Chunks mapped by `fill` / `fillFrom` / `mapPresent`. */
  filled: number;
  /** Misses fetched natively from the remote (`serveMissesFrom`), not handed to JavaScript. */
  remoteFetches: number;
}

export interface NativeUffdRegion {
  readonly id: number;
  readonly address: number;
  readonly size: number;
  readonly chunkSize: number;
  readonly chunks: number;
  readonly uffd: number;
  readonly memfd: number;
  view(offset?: number, length?: number): ArrayBuffer;
  complete(chunk: number, ok: boolean): void;
  fill(chunk: number): boolean;
  fillFrom(chunk: number, bytes: Uint8Array): boolean;
  mapPresent(first: number, count: number): number;
  serveMissesFrom(remote: {
    fd: number;
    timeoutMs: number;
    minimumBlockSize: number;
    maximumBlockSize: number;
  }): void;
  evict(chunk: number): void;
  setGated(gated: boolean): void;
  stats(): UffdStats;
  close(): void;
  ref(): void;
  unref(): void;
}

export interface NativeMappedFile {
  view(offset?: number, length?: number): ArrayBuffer;
  sync(offset?: number, length?: number, async?: boolean): void;
  lock(offset?: number, length?: number): void;
  unlock(offset?: number, length?: number): void;
  close(): void;
}

export interface UffdNative {
  UffdRegion: new (options: NativeUffdRegionOptions) => NativeUffdRegion;
  uffdAttachView(id: number, offset?: number, length?: number): ArrayBuffer;
  uffdFeatures(): { available: boolean; errno?: string; features: number; names: string };
  pagemapScanWritten(address: number, length: number, reprotect?: boolean): Float64Array;
  MappedFile: new (options: {
    fd: number;
    offset: number;
    length: number;
    shared: boolean;
    writable: boolean;
  }) => NativeMappedFile;
}

export function uffdNative(): UffdNative {
  return addon() as unknown as UffdNative;
}

/** Absolute path of the compiled addon, for worker threads that load it themselves. */
export function nativeAddonPath(): string {
  return createRequire(import.meta.url).resolve("../build/Release/r3map_native.node");
}

const codeByErrno: Record<string, ErrorCode> = {
  EPERM: "ERR_PERMISSION",
  EACCES: "ERR_PERMISSION",
  ENOSPC: "ERR_NO_SPACE",
  ENOMEM: "ERR_NO_SPACE",
  EINVAL: "ERR_INVALID_ARGUMENT",
  ENOSYS: "ERR_KERNEL_FEATURE_MISSING",
  ENOTTY: "ERR_KERNEL_FEATURE_MISSING",
  EROFS: "ERR_READ_ONLY",
  ENOTSUP: "ERR_NOT_SUPPORTED",
  EOPNOTSUPP: "ERR_NOT_SUPPORTED",
};

/**
 * The addon throws plain Errors carrying either an r3map `code` or an errno
 * name in `errno`; this gives every one of them a stable R3mapError code.
 */
export function nativeError(error: unknown): unknown {
  if (error instanceof R3mapError || !(error instanceof Error)) return error;
  const { code, errno } = error as Error & { code?: unknown; errno?: unknown };
  const errnoName = typeof errno === "string" ? errno : undefined;
  const options = errnoName === undefined ? { cause: error } : { cause: error, errno: errnoName };
  if (typeof code === "string" && code.startsWith("ERR_"))
    return new R3mapError(code as ErrorCode, error.message, options);
  if (errnoName !== undefined)
    return new R3mapError(codeByErrno[errnoName] ?? "ERR_IO", error.message, options);
  return error;
}

/** Runs a native call, rethrowing its error as an R3mapError. */
export function callNative<T>(operation: () => T): T {
  try {
    return operation();
  } catch (error) {
    throw nativeError(error);
  }
}
