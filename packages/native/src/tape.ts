/**
 * Magnetic tape control (for tapisk): MTIOCTOP, MTIOCGET and MTIOCPOS on a
 * tape device such as /dev/nst0, with the kernel's own struct layouts. Each
 * call runs on a native thread (a rewind can take minutes). Access to the
 * device node is all it needs (usually group `tape` or root).
 */
import * as fs from "node:fs";
import { R3mapError } from "@r3map/core";
import { addon, type NativeMtStatus } from "./addon.js";
import { checkNonNegativeInteger, mapNativeError } from "./fuse-errors.js";

/** Operations of MTIOCTOP, by name (values come from <sys/mtio.h>). */
export type TapeOperation =
  | "reset"
  | "forwardFile"
  | "backwardFile"
  | "forwardRecord"
  | "backwardRecord"
  | "writeFileMark"
  | "rewind"
  | "offline"
  | "nop"
  | "retension"
  | "endOfMedia"
  | "erase"
  | "setBlockSize"
  | "setDensity"
  | "seek"
  | "tell"
  | "lock"
  | "unlock"
  | "load"
  | "unload"
  | "compression"
  | "setPartition";

export type TapeStatus = NativeMtStatus;

/** The kernel's number for an operation name. */
export function tapeOperationCode(operation: TapeOperation): number {
  const code = addon().mtOperations[operation];
  if (code === undefined)
    throw new R3mapError("ERR_INVALID_ARGUMENT", `unknown tape operation "${operation}"`);
  return code;
}

/** MTIOCTOP on an open tape device; `count` is the operation's argument (files, records, block number, size). */
export async function tapeOperation(fd: number, operation: TapeOperation, count = 1): Promise<void> {
  checkNonNegativeInteger(count, "count");
  try {
    await addon().mtOperation(fd, tapeOperationCode(operation), count);
  } catch (error) {
    throw mapNativeError(error, `tape ${operation}`);
  }
}

/** MTIOCGET. */
export async function tapeStatus(fd: number): Promise<TapeStatus> {
  try {
    return await addon().mtStatus(fd);
  } catch (error) {
    throw mapNativeError(error, "tape status");
  }
}

/**
 * One read(2) at the current position into `buffer`: in fixed-block mode the
 * driver reads `buffer.length / blockSize` blocks. Resolves with the bytes
 * read (0 at a file mark or the end of data). Runs on a native thread.
 */
export async function tapeRead(fd: number, buffer: Uint8Array): Promise<number> {
  try {
    const bytes = await addon().mtRead(fd, buffer.length);
    buffer.set(bytes);
    return bytes.length;
  } catch (error) {
    throw mapNativeError(error, "tape read");
  }
}

/** One write(2) of `buffer` at the current position (the drive then ends its data there). Runs on a native thread. */
export async function tapeWrite(fd: number, buffer: Uint8Array): Promise<number> {
  try {
    return await addon().mtWrite(fd, buffer);
  } catch (error) {
    throw mapNativeError(error, "tape write");
  }
}

/** MTIOCPOS: the current block number. */
export async function tapePosition(fd: number): Promise<number> {
  try {
    return await addon().mtPosition(fd);
  } catch (error) {
    throw mapNativeError(error, "tape position");
  }
}

/** An open tape device with the common operations spelled out (`mt`'s, plus record reads and writes). */
export class TapeDrive {
  readonly path: string;
  readonly #handle: fs.promises.FileHandle;

  private constructor(path: string, handle: fs.promises.FileHandle) {
    this.path = path;
    this.#handle = handle;
  }

  static async open(path: string, options: { readOnly?: boolean } = {}): Promise<TapeDrive> {
    try {
      return new TapeDrive(path, await fs.promises.open(path, options.readOnly ? "r" : "r+"));
    } catch (error) {
      throw mapNativeError(error, `cannot open tape device ${path}`);
    }
  }

  get fd(): number {
    return this.#handle.fd;
  }

  operation(operation: TapeOperation, count = 1): Promise<void> {
    return tapeOperation(this.fd, operation, count);
  }
  rewind(): Promise<void> {
    return this.operation("rewind");
  }
  /** Seeks to an absolute block number. */
  seek(block: number): Promise<void> {
    return this.operation("seek", block);
  }
  endOfMedia(): Promise<void> {
    return this.operation("endOfMedia");
  }
  writeFileMarks(count = 1): Promise<void> {
    return this.operation("writeFileMark", count);
  }
  /** Fixed block size in bytes; 0 selects variable-size blocks. */
  setBlockSize(bytes: number): Promise<void> {
    return this.operation("setBlockSize", bytes);
  }
  status(): Promise<TapeStatus> {
    return tapeStatus(this.fd);
  }
  /** The drive's fixed block size (MTIOCGET); 0 when it is in variable-block mode. */
  async blockSize(): Promise<number> {
    return (await this.status()).blockSize;
  }
  /** Reads one record (fixed-block mode: `buffer.length / blockSize` blocks); resolves with the bytes read. */
  read(buffer: Uint8Array): Promise<number> {
    return tapeRead(this.fd, buffer);
  }
  /** Writes `buffer` as the next record(s). */
  write(buffer: Uint8Array): Promise<number> {
    return tapeWrite(this.fd, buffer);
  }
  position(): Promise<number> {
    return tapePosition(this.fd);
  }

  /** Closes the device; wait for pending operations first (they use the descriptor). */
  close(): Promise<void> {
    return this.#handle.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
