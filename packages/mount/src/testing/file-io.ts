import { execFileSync } from "node:child_process";
import * as fs from "node:fs";

/** Reads `length` bytes of `file` at `offset` with plain synchronous calls (as an application would). */
export function readAt(file: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(file, "r");
  try {
    const buffer = Buffer.alloc(length);
    fs.readSync(fd, buffer, 0, length, offset);
    return buffer;
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes `data` into `file` at `offset` with plain synchronous calls. */
export function writeAt(file: string, offset: number, data: Uint8Array): void {
  const fd = fs.openSync(file, "r+");
  try {
    fs.writeSync(fd, data, 0, data.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** Runs fio against `file` with a write-then-verify job; throws with fio's output if verification fails. */
export function fioVerify(file: string, size: number, blockSize = "4k"): void {
  execFileSync(
    "fio",
    [
      "--name=verify",
      `--filename=${file}`,
      `--size=${size}`,
      "--rw=randwrite",
      `--bs=${blockSize}`,
      "--ioengine=psync",
      "--direct=1",
      "--verify=crc32c",
      "--verify_fatal=1",
      "--verify_state_save=0",
      "--do_verify=1",
      "--randrepeat=1",
      "--output-format=terse",
    ],
    { stdio: ["ignore", "pipe", "pipe"], timeout: 120_000 },
  );
}
