import * as fs from "node:fs";

/**
 * What the main thread does to a mount: synchronous reads and writes, as a
 * program using the mount would (the engine answers on its worker thread).
 * Reads compare a sample of every piece with the source image, so a
 * benchmark that returned wrong bytes fails instead of reporting a number.
 */

const MiB = 1024 * 1024;
const PAGE = 4096;

export interface Transfer {
  bytes: number;
  ms: number;
}

/**
 * Milliseconds for a 4 KiB read of a freshly opened mount's file (O_DIRECT, so
 * no readahead widens it). Only the read is timed, as a slice's touch is:
 * opening and closing the file are FUSE requests of their own, answered
 * without the remote.
 */
export function firstFileRead(file: string, offset: number, source: Buffer): number {
  const page = Buffer.alloc(PAGE);
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
  let ms: number;
  try {
    const start = performance.now();
    fs.readSync(fd, page, 0, PAGE, offset);
    ms = performance.now() - start;
  } finally {
    fs.closeSync(fd);
  }
  check(page, source, offset, "first read");
  return ms;
}

/** Milliseconds for the first touch (a 4 KiB copy) of a freshly opened slice. */
export function firstSliceRead(memory: Buffer, offset: number, source: Buffer): number {
  const page = Buffer.alloc(PAGE);
  const start = performance.now();
  memory.copy(page, 0, offset, offset + PAGE);
  const ms = performance.now() - start;
  check(page, source, offset, "first touch");
  return ms;
}

/** Reads the file from the start in 1 MiB pieces until its end or until `capMs` have passed. */
export function readFileSequentially(file: string, size: number, source: Buffer, capMs: number): Transfer {
  const piece = Buffer.allocUnsafe(MiB);
  const fd = fs.openSync(file, "r");
  try {
    const start = performance.now();
    let offset = 0;
    while (offset < size && performance.now() - start < capMs) {
      const n = fs.readSync(fd, piece, 0, Math.min(MiB, size - offset), offset);
      if (n <= 0) throw new Error(`short read at ${offset} of ${file}`);
      checkSample(piece, n, source, offset);
      offset += n;
    }
    return { bytes: offset, ms: performance.now() - start };
  } finally {
    fs.closeSync(fd);
  }
}

/** Copies the slice out in 1 MiB pieces from the start until its end or until `capMs` have passed. */
export function readSliceSequentially(memory: Buffer, source: Buffer, capMs: number): Transfer {
  const piece = Buffer.allocUnsafe(MiB);
  const start = performance.now();
  let offset = 0;
  while (offset < memory.length && performance.now() - start < capMs) {
    const n = memory.copy(piece, 0, offset, Math.min(memory.length, offset + MiB));
    checkSample(piece, n, source, offset);
    offset += n;
  }
  return { bytes: offset, ms: performance.now() - start };
}

/**
 * Writes `source` over the file from the start in 1 MiB pieces until its end
 * or until `capMs` have passed; returns the bytes written and the write time
 * (the caller adds the close that pushes them).
 */
export function writeFileSequentially(file: string, source: Buffer, capMs: number): Transfer {
  const fd = fs.openSync(file, "r+");
  try {
    const start = performance.now();
    let offset = 0;
    while (offset < source.length && performance.now() - start < capMs) {
      const n = fs.writeSync(fd, source, offset, Math.min(MiB, source.length - offset), offset);
      offset += n;
    }
    return { bytes: offset, ms: performance.now() - start };
  } finally {
    fs.closeSync(fd);
  }
}

/** One page per piece, at a position that moves with the offset, compared with the source. */
function checkSample(piece: Buffer, length: number, source: Buffer, offset: number): void {
  const at = Math.floor(((offset / MiB) * 7919) % Math.max(1, Math.floor(length / PAGE))) * PAGE;
  const end = Math.min(length, at + PAGE);
  check(piece.subarray(at, end), source, offset + at, "sequential read");
}

function check(bytes: Buffer, source: Buffer, offset: number, what: string): void {
  if (!bytes.equals(source.subarray(offset, offset + bytes.length))) {
    throw new Error(`${what}: wrong bytes at offset ${offset} (mount content differs from the remote)`);
  }
}
