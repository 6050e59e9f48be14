/**
 * Loop devices: the block-device frontend on kernels without NBD. Attach a
 * file (typically a FuseFile) with LOOP_CONFIGURE and get /dev/loopN, which
 * mkfs, mount and swapon accept. Needs root (CAP_SYS_ADMIN).
 *
 * Attaching and detaching run on native threads: detaching flushes I/O that a
 * FUSE server on this very thread may have to answer.
 */
import * as fs from "node:fs";
import { R3mapError } from "@r3map/core";
import { addon } from "./addon.js";
import { checkNonNegativeInteger, mapNativeError } from "./fuse-errors.js";

export interface LoopAttachOptions {
  readOnly?: boolean;
  /** The loop driver reads and writes the file with O_DIRECT (no double caching). Default false. */
  directIo?: boolean;
  /** Detach as soon as the last user closes the device (our handle counts as a user until close()). */
  autoclear?: boolean;
  /** Scan for partitions. */
  partscan?: boolean;
  /** Logical block size (512, 1024, 2048 or 4096); 0 or absent keeps 512. */
  blockSize?: number;
}

export interface LoopStatus {
  device: string;
  number: number;
  backingFile: string;
  offset: number;
  sizeLimit: number;
  readOnly: boolean;
  autoclear: boolean;
  partscan: boolean;
  directIo: boolean;
}

export class LoopDevice {
  /** /dev/loopN */
  readonly path: string;
  readonly number: number;
  readonly backingFile: string;
  readonly autoclear: boolean;
  readonly #fd: number;
  #closing: Promise<boolean> | undefined;

  private constructor(number: number, fd: number, backingFile: string, autoclear: boolean) {
    this.number = number;
    this.path = `/dev/loop${number}`;
    this.#fd = fd;
    this.backingFile = backingFile;
    this.autoclear = autoclear;
  }

  /** Attaches `file` to a free loop device (retrying if another process takes it first). */
  static async attach(file: string, options: LoopAttachOptions = {}): Promise<LoopDevice> {
    const blockSize = options.blockSize ?? 0;
    if (![0, 512, 1024, 2048, 4096].includes(blockSize)) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `blockSize must be 512, 1024, 2048 or 4096, got ${blockSize}`,
      );
    }
    if (!fs.existsSync("/dev/loop-control")) {
      throw new R3mapError(
        "ERR_KERNEL_FEATURE_MISSING",
        "loop devices are not available: /dev/loop-control is missing",
      );
    }
    const autoclear = options.autoclear ?? false;
    try {
      const { number, fd } = await addon().loopAttach(file, {
        readOnly: options.readOnly ?? false,
        directIo: options.directIo ?? false,
        autoclear,
        partscan: options.partscan ?? false,
        blockSize,
      });
      return new LoopDevice(number, fd, file, autoclear);
    } catch (error) {
      throw mapNativeError(error, `cannot attach ${file} to a loop device`);
    }
  }

  status(): Promise<LoopStatus> {
    return loopStatus(this.path);
  }

  /**
   * Writes back and drops the device's buffer cache (BLKFLSBUF), so that
   * reads see the backing file's bytes again after they changed behind the
   * device. A file system mounted on the device keeps its own caches.
   */
  async flushBuffers(): Promise<void> {
    if (this.#closing) throw new R3mapError("ERR_CLOSED", `${this.path} is detached`);
    try {
      await addon().loopFlushBuffers(this.#fd);
    } catch (error) {
      throw mapNativeError(error, `cannot flush the buffers of ${this.path}`);
    }
  }

  /**
   * Detaches the device (with autoclear: lets it go once its other users close
   * it) and resolves true if it is free now. Idempotent.
   */
  close(): Promise<boolean> {
    this.#closing ??= addon()
      .loopDetach(this.#fd, this.number, !this.autoclear)
      .catch((error: unknown) => {
        throw mapNativeError(error, `cannot detach ${this.path}`);
      });
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

export async function loopStatus(device: string): Promise<LoopStatus> {
  const native = addon();
  try {
    const s = await native.loopStatus(device);
    const flags = native.loopFlags;
    return {
      device,
      number: s.number,
      backingFile: s.backingFile,
      offset: s.offset,
      sizeLimit: s.sizeLimit,
      readOnly: (s.flags & flags.readOnly) !== 0,
      autoclear: (s.flags & flags.autoclear) !== 0,
      partscan: (s.flags & flags.partscan) !== 0,
      directIo: (s.flags & flags.directIo) !== 0,
    };
  } catch (error) {
    throw mapNativeError(error, `cannot read the status of ${device}`);
  }
}

/** Attached loop devices and their backing files, from sysfs. */
export function listLoopDevices(): Array<{ device: string; backingFile: string }> {
  const found: Array<{ device: string; backingFile: string }> = [];
  for (const name of fs.readdirSync("/sys/block")) {
    if (!/^loop\d+$/.test(name)) continue;
    try {
      const backingFile = fs.readFileSync(`/sys/block/${name}/loop/backing_file`, "utf8").trimEnd();
      found.push({ device: `/dev/${name}`, backingFile });
    } catch {
      // not attached
    }
  }
  return found;
}

/** Detaches a loop device by path (e.g. one left by a crashed process); resolves true if it is free now. */
export async function detachLoopDevice(device: string): Promise<boolean> {
  const number = Number(/^\/dev\/loop(\d+)$/.exec(device)?.[1] ?? Number.NaN);
  checkNonNegativeInteger(number, `loop device number of ${device}`);
  let fd: number;
  try {
    fd = fs.openSync(device, fs.constants.O_RDONLY);
  } catch (error) {
    throw mapNativeError(error, `cannot open ${device}`);
  }
  try {
    return await addon().loopDetach(fd, number, true);
  } catch (error) {
    throw mapNativeError(error, `cannot detach ${device}`);
  }
}
