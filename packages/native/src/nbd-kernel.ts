/**
 * The kernel NBD client, for hosts that have it (/dev/nbd*): hand the kernel a
 * socket that has completed the NBD handshake and get a block device. This
 * machine's kernel has no NBD (use FuseFile + LoopDevice instead), so
 * everything here is feature-detected. Needs root (CAP_SYS_ADMIN).
 */
import * as fs from "node:fs";
import { R3mapError } from "@r3map/core";
import { addon } from "./addon.js";
import { checkNonNegativeInteger, checkPositiveInteger, mapNativeError } from "./fuse-errors.js";

const MISSING = "kernel NBD not available: load the nbd module or use the FUSE device";

/** Whether the kernel offers NBD devices (the nbd module is loaded or built in). */
export function isKernelNbdAvailable(): boolean {
  return fs.existsSync("/sys/block/nbd0") || fs.existsSync("/dev/nbd0");
}

function nbdNumbers(): number[] {
  if (!fs.existsSync("/sys/block")) return [];
  return fs
    .readdirSync("/sys/block")
    .map((name) => /^nbd(\d+)$/.exec(name)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}

/** The first NBD device with no connection (no `pid` in sysfs), or undefined. */
export function findFreeNbdDevice(): string | undefined {
  const free = nbdNumbers().find((n) => !fs.existsSync(`/sys/block/nbd${n}/pid`));
  return free === undefined ? undefined : `/dev/nbd${free}`;
}

export interface KernelNbdOptions {
  /** A connected socket's file descriptor, after the handshake (e.g. NBD_OPT_GO). The kernel takes its own reference. */
  socketFd: number;
  /** Export size in bytes (a multiple of blockSize). */
  size: number;
  /** Transmission flags from the handshake (NBD_FLAG_*). */
  flags: number;
  blockSize?: number;
  /** Seconds before a stuck request fails (default 30). */
  timeoutSeconds?: number;
  /** Default: the first free device. */
  device?: string;
}

export class KernelNbdDevice {
  readonly path: string;
  readonly #handle: number;
  #closing: Promise<void> | undefined;

  private constructor(path: string, handle: number) {
    this.path = path;
    this.#handle = handle;
  }

  /** Connects the socket to an NBD device; resolves once the kernel serves it (sysfs pid appears). */
  static async connect(options: KernelNbdOptions): Promise<KernelNbdDevice> {
    if (!isKernelNbdAvailable()) throw new R3mapError("ERR_KERNEL_FEATURE_MISSING", MISSING);
    const blockSize = options.blockSize ?? 4096;
    checkPositiveInteger(options.size, "size");
    checkNonNegativeInteger(options.socketFd, "socketFd");
    if (![512, 1024, 2048, 4096].includes(blockSize) || options.size % blockSize !== 0) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `blockSize must be 512…4096 and divide size (${options.size}), got ${blockSize}`,
      );
    }
    const device = options.device ?? findFreeNbdDevice();
    if (device === undefined)
      throw new R3mapError("ERR_NO_SPACE", "every NBD device is in use: load nbd with more nbds_max");
    try {
      const handle = await addon().nbdKernelConnect({
        device,
        socketFd: options.socketFd,
        size: options.size,
        blockSize,
        flags: options.flags,
        timeoutSeconds: options.timeoutSeconds ?? 30,
      });
      return new KernelNbdDevice(device, handle);
    } catch (error) {
      throw mapNativeError(error, `cannot connect ${device}`);
    }
  }

  /** NBD_DISCONNECT, waits for the kernel's loop to end, clears the socket. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= addon()
      .nbdKernelDisconnect(this.#handle)
      .catch((error: unknown) => {
        throw mapNativeError(error, `cannot disconnect ${this.path}`);
      });
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
