/**
 * Loads the compiled addon (build/Release/r3map_native.node, built by
 * `pnpm install` with node-gyp) and types what it exports. Each facility adds
 * its own members to `NativeAddon` below.
 */
import { createRequire } from "node:module";
import { R3mapError } from "@r3map/core";

// ---- FUSE (fuse_server.cc) --------------------------------------------------

/** Request kinds the FUSE server hands to JavaScript. */
/**
 * RemoteRead and StoredWhole are notices, answered with nothing: a READ of
 * chunks not in the cache went to the NBD server; chunks that were not
 * present were written whole into the cache natively and are present now.
 */
export const FuseRequestKind = {
  Read: 0,
  Write: 1,
  Flush: 2,
  Fsync: 3,
  RemoteRead: 4,
  StoredWhole: 5,
} as const;
export type FuseRequestKind = (typeof FuseRequestKind)[keyof typeof FuseRequestKind];

export interface NativeFuseOptions {
  mountPoint: string;
  fileName: string;
  fsName: string;
  size: number;
  mode: number;
  readOnly: boolean;
  directIo: boolean;
  forwardFlush: boolean;
  forwardFsync: boolean;
  threads: number;
  readAheadKb: number;
  local?: {
    chunkSize: number;
    bitmap?: Int32Array | Uint32Array;
    segments?: readonly Uint8Array[];
    segmentSize?: number;
    hugePages?: boolean;
    fd?: number;
    dirty?: Int32Array | Uint32Array;
    inFlight?: Int32Array | Uint32Array;
  };
  /** A socket in the NBD transmission phase (simple replies) that the server reads from itself; dup'ed. */
  remote?: { fd: number; timeoutMs: number; minimumBlockSize: number; maximumBlockSize: number };
  dispatch(
    kind: FuseRequestKind,
    channel: number,
    unique: number,
    offset: number,
    length: number,
    data: Buffer | undefined,
  ): void;
}

export interface NativeFuseStats {
  nativeReads: number;
  forwardedReads: number;
  forwardedWrites: number;
  nativeWrites: number;
  remoteReads: number;
  channels: number;
}

export interface NativeFuseServer {
  /** Mounts, starts the request threads, resolves with the mount's "major:minor" after INIT. */
  mount(): Promise<string>;
  replyRead(
    channel: number,
    unique: number,
    errno: number,
    data: Uint8Array | undefined,
    offset: number,
    length: number,
  ): void;
  replyWrite(channel: number, unique: number, errno: number, written: number): void;
  replyStatus(channel: number, unique: number, errno: number): void;
  /** 0: serve what native code can; 1: forward every WRITE; 2: forward every READ and WRITE. */
  setAccess(access: number): void;
  /** Drops the kernel's cached pages of the file in the range (length 0: to the end). */
  invalidate(offset: number, length: number): Promise<void>;
  close(): Promise<void>;
  closeSync(): void;
  stats(): NativeFuseStats;
  ref(): void;
  unref(): void;
}

// ---- loop devices (loop_device.cc) ----------------------------------------

export interface NativeLoopAttachOptions {
  readOnly: boolean;
  directIo: boolean;
  autoclear: boolean;
  partscan: boolean;
  blockSize: number;
}

export interface NativeLoopStatus {
  number: number;
  backingFile: string;
  offset: number;
  sizeLimit: number;
  flags: number;
}

// ---- kernel NBD (nbd_kernel.cc) -------------------------------------------

export interface NativeNbdKernelOptions {
  device: string;
  socketFd: number;
  size: number;
  blockSize: number;
  flags: number;
  timeoutSeconds: number;
}

// ---- tape (mtio.cc) ---------------------------------------------------------

export interface NativeMtStatus {
  type: number;
  residual: number;
  dsreg: number;
  gstat: number;
  erreg: number;
  fileNumber: number;
  blockNumber: number;
  /** The drive's fixed block size from `dsreg` (0: variable-size records). */
  blockSize: number;
  density: number;
}

export interface NativeAddon {
  FuseServer: new (options: NativeFuseOptions) => NativeFuseServer;

  loopAttach(path: string, options: NativeLoopAttachOptions): Promise<{ number: number; fd: number }>;
  /** Detaches (LOOP_CLR_FD unless autoclear only) and closes our fd; resolves true when the device is free. */
  loopDetach(fd: number, number: number, clear: boolean): Promise<boolean>;
  loopStatus(device: string): Promise<NativeLoopStatus>;
  /** BLKFLSBUF on a thread of its own: writes back and drops the device's buffer cache. */
  loopFlushBuffers(fd: number): Promise<void>;
  loopFlags: Record<"readOnly" | "autoclear" | "partscan" | "directIo", number>;

  nbdKernelConnect(options: NativeNbdKernelOptions): Promise<number>;
  nbdKernelDisconnect(handle: number): Promise<void>;

  mtOperation(fd: number, operation: number, count: number): Promise<void>;
  mtStatus(fd: number): Promise<NativeMtStatus>;
  mtPosition(fd: number): Promise<number>;
  /** One read(2) of up to `length` bytes on a native thread; resolves with a copy of what was read. */
  mtRead(fd: number, length: number): Promise<Buffer>;
  /** One write(2) of `bytes` (copied first) on a native thread; resolves with the count written. */
  mtWrite(fd: number, bytes: Uint8Array): Promise<number>;

  /** A SharedArrayBuffer over a MAP_SHARED mapping of the first `length` bytes of the file. */
  mapSharedFile(fd: number, length: number): SharedArrayBuffer;
  /** msync (MS_SYNC) of a SharedArrayBuffer made by `mapSharedFile`. */
  msyncShared(buffer: SharedArrayBuffer): void;
  mtOperations: Record<string, number>;

  /** Resolves with the bytes populated once done, or once `cancel[0]` is non-zero. */
  populateMemory(view: Uint8Array, cancel: Int32Array, hugePages?: boolean): Promise<number>;

  readOnThread(path: string, offset: number, length: number): Promise<number>;
  touchOnThread(memory: Uint8Array, offset: number): Promise<void>;

  keepFromChildren(view: Uint8Array): boolean;

  /** Per-chunk digests of spans of an fd or of memory segments into `out`, on native threads (digest.cc). */
  digestChunks(options: NativeDigestOptions): Promise<void>;
}

// ---- digests (digest.cc) -----------------------------------------------------

export interface NativeDigestOptions {
  /** Offset, length pairs; each span is cut into chunks from its start. */
  spans: Float64Array;
  chunkSize: number;
  /** 0: XXH3-128 (16 bytes per digest), 1: BLAKE3 (32). */
  algorithm: number;
  threads: number;
  out: Uint8Array;
  /** Set element 0 to non-zero to stop early (the promise then rejects with ECANCELED). */
  cancel?: Int32Array;
  fd?: number;
  direct?: boolean;
  segments?: readonly Uint8Array[];
}

let loaded: NativeAddon | undefined;

/** The addon, loaded on first use. */
export function addon(): NativeAddon {
  if (loaded === undefined) {
    const require = createRequire(import.meta.url);
    try {
      loaded = require("../build/Release/r3map_native.node") as NativeAddon;
    } catch (error) {
      throw new R3mapError(
        "ERR_NOT_SUPPORTED",
        "the @r3map/native addon is not built: run `pnpm install` (needs g++, make and python3) in packages/native",
        { cause: error },
      );
    }
  }
  return loaded;
}
