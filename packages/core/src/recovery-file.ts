import { createHash, type Hash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Backend } from "./backend.js";
import { ChunkLayout } from "./chunk-layout.js";
import { fromSystemError, R3mapError } from "./errors.js";

/**
 * Changes a mount could not push, saved to a file so that they can be pushed
 * later (`applyRecoveryFile`). Layout:
 *
 *     "R3MAPRC1"  u32 BE header length  header (JSON, `RecoveryHeader`)
 *     per chunk:  u64 BE chunk index  u32 BE length  bytes
 *     trailer:    SHA-256 of everything before it (32 bytes)  "R3MAPEND"
 *
 * The file is written beside its final name, synced, renamed into place and
 * the directory synced: it exists whole or not at all. A file cut short or
 * damaged later fails the checksum, which is checked before anything is
 * applied.
 */
export interface RecoveryHeader {
  /** The remote the changes belong to, as a backend URI ("" for a Backend object). */
  remote: string;
  /** Packages that register the remote's scheme (a mount's `schemes`). */
  schemes?: string[];
  /**
   * Names of the filters the mount stacked on the remote: the chunks hold the
   * bytes above them, so they must be applied through the same filters. Their
   * options are not stored (they may hold keys).
   */
  filters?: string[];
  size: number;
  chunkSize: number;
  chunks: number;
  bytes: number;
  /** When the file was written (ISO 8601). */
  createdAt: string;
}

export type RecoverySource = Omit<RecoveryHeader, "chunks" | "bytes" | "createdAt">;

const MAGIC = Buffer.from("R3MAPRC1");
const END = Buffer.from("R3MAPEND");
const TRAILER = 32 + END.length;
const RECORD_HEAD = 12;

/**
 * Writes `chunks` — read with `read` — crash-consistently to `file`, or to
 * `file-1`, `file-2`, … when `file` exists (an earlier recovery file is never
 * replaced), creating its directory if needed. Resolves with the path
 * written and what it holds.
 */
export async function writeRecoveryFile(
  file: string,
  source: RecoverySource,
  chunks: readonly number[],
  read: (chunk: number, into: Uint8Array) => Promise<void>,
): Promise<{ file: string; chunks: number; bytes: number }> {
  const layout = new ChunkLayout(source.size, source.chunkSize);
  const bytes = chunks.reduce((sum, chunk) => sum + layout.lengthOf(chunk), 0);
  const header: RecoveryHeader = {
    ...source,
    chunks: chunks.length,
    bytes,
    createdAt: new Date().toISOString(),
  };
  try {
    await fs.promises.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  } catch (error) {
    throw fromSystemError(error, `cannot create the directory of the recovery file ${file}`);
  }
  const target = freeName(path.resolve(file));
  const temporary = `${target}.${process.pid}.partial`;
  let handle: fs.promises.FileHandle | undefined;
  try {
    handle = await fs.promises.open(temporary, "wx", 0o600);
    const out = new HashingWriter(handle);
    const json = Buffer.from(JSON.stringify(header));
    const length = Buffer.alloc(4);
    length.writeUInt32BE(json.length);
    await out.write(MAGIC, length, json);
    let buffer = new Uint8Array(source.chunkSize);
    for (const chunk of chunks) {
      const size = layout.lengthOf(chunk);
      if (buffer.length !== size) buffer = new Uint8Array(size);
      await read(chunk, buffer);
      const head = Buffer.alloc(RECORD_HEAD);
      head.writeBigUInt64BE(BigInt(chunk));
      head.writeUInt32BE(size, 8);
      await out.write(head, buffer);
    }
    await out.finish(END);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fs.promises.rename(temporary, target);
    await syncDirectory(path.dirname(target));
    return { file: target, chunks: chunks.length, bytes };
  } catch (error) {
    await handle?.close().catch(() => {});
    await fs.promises.rm(temporary, { force: true });
    throw fromSystemError(error, `cannot write the recovery file ${target}`);
  }
}

/** Reads a recovery file's header after checking the whole file against its checksum. */
export async function readRecoveryFile(file: string): Promise<RecoveryHeader> {
  const handle = await openForReading(file);
  try {
    return await verified(handle, file);
  } finally {
    await handle.close();
  }
}

/**
 * Writes the chunks of a recovery file to `remote` (already opened, with the
 * filters the header names), then syncs it. The file is checked first, so
 * nothing is applied from a damaged one; it is not removed (the caller does,
 * once this resolved). Applying a file twice is harmless.
 */
export async function applyRecoveryFile(
  file: string,
  remote: Backend,
  onChunk?: (done: number, total: number) => void,
): Promise<RecoveryHeader> {
  const handle = await openForReading(file);
  try {
    const header = await verified(handle, file);
    if (remote.size !== header.size) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `${file} holds changes to a resource of ${header.size} bytes; the remote given has ${remote.size}`,
      );
    }
    const layout = new ChunkLayout(header.size, header.chunkSize);
    let position = MAGIC.length + 4 + (await headerLength(handle));
    const head = Buffer.alloc(RECORD_HEAD);
    for (let done = 0; done < header.chunks; done++) {
      await readExactly(handle, head, position, file);
      const chunk = Number(head.readBigUInt64BE());
      const length = head.readUInt32BE(8);
      if (chunk >= layout.count || length !== layout.lengthOf(chunk)) {
        throw new R3mapError("ERR_INTEGRITY", `${file} holds a record for chunk ${chunk} of ${length} bytes`);
      }
      const bytes = new Uint8Array(length);
      await readExactly(handle, bytes, position + RECORD_HEAD, file);
      await remote.writeAt(bytes, layout.offsetOf(chunk));
      position += RECORD_HEAD + length;
      onChunk?.(done + 1, header.chunks);
    }
    await remote.sync();
    return header;
  } finally {
    await handle.close();
  }
}

/** Appends to a file while hashing what it wrote; `finish` writes the trailer. */
class HashingWriter {
  readonly #hash: Hash = createHash("sha256");
  #position = 0;

  constructor(readonly handle: fs.promises.FileHandle) {}

  async write(...parts: Uint8Array[]): Promise<void> {
    for (const part of parts) {
      this.#hash.update(part);
      let done = 0;
      while (done < part.length) {
        const { bytesWritten } = await this.handle.write(part, done, part.length - done, this.#position);
        done += bytesWritten;
        this.#position += bytesWritten;
      }
    }
  }

  async finish(end: Buffer): Promise<void> {
    const digest = this.#hash.digest();
    await this.handle.write(Buffer.concat([digest, end]), 0, TRAILER, this.#position);
  }
}

/** Checks magic, trailer and checksum; returns the header. */
async function verified(handle: fs.promises.FileHandle, file: string): Promise<RecoveryHeader> {
  const { size } = await handle.stat();
  const damaged = (why: string) =>
    new R3mapError(
      "ERR_INTEGRITY",
      `${file} is not a complete r3map recovery file (${why}); nothing was applied`,
    );
  if (size < MAGIC.length + 4 + TRAILER) throw damaged("too short");
  const magic = Buffer.alloc(MAGIC.length);
  await readExactly(handle, magic, 0, file);
  if (!magic.equals(MAGIC)) throw damaged("no r3map recovery header");
  const trailer = Buffer.alloc(TRAILER);
  await readExactly(handle, trailer, size - TRAILER, file);
  if (!trailer.subarray(32).equals(END)) throw damaged("its end is missing: the file was cut short");
  const hash = createHash("sha256");
  const block = Buffer.alloc(1024 * 1024);
  for (let position = 0; position < size - TRAILER; ) {
    const length = Math.min(block.length, size - TRAILER - position);
    await readExactly(handle, block.subarray(0, length), position, file);
    hash.update(block.subarray(0, length));
    position += length;
  }
  if (!hash.digest().equals(trailer.subarray(0, 32))) throw damaged("checksum mismatch");
  const length = await headerLength(handle);
  const json = Buffer.alloc(length);
  await readExactly(handle, json, MAGIC.length + 4, file);
  const header = JSON.parse(json.toString("utf8")) as RecoveryHeader;
  const records = size - TRAILER - MAGIC.length - 4 - length;
  if (records !== header.bytes + header.chunks * RECORD_HEAD)
    throw damaged("its records do not match its header");
  return header;
}

async function headerLength(handle: fs.promises.FileHandle): Promise<number> {
  const length = Buffer.alloc(4);
  await handle.read(length, 0, 4, MAGIC.length);
  return length.readUInt32BE();
}

async function readExactly(
  handle: fs.promises.FileHandle,
  into: Uint8Array,
  position: number,
  file: string,
): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await handle.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) throw new R3mapError("ERR_INTEGRITY", `${file} ends early`);
    done += bytesRead;
  }
}

async function openForReading(file: string): Promise<fs.promises.FileHandle> {
  try {
    return await fs.promises.open(file, "r");
  } catch (error) {
    throw fromSystemError(error, `cannot open the recovery file ${file}`);
  }
}

/** `file`, or the first of `file-1`, `file-2`, … that does not exist. */
function freeName(file: string): string {
  if (!fs.existsSync(file)) return file;
  for (let n = 1; ; n++) {
    const candidate = `${file}-${n}`;
    if (!fs.existsSync(candidate)) return candidate;
  }
}

async function syncDirectory(directory: string): Promise<void> {
  const handle = await fs.promises.open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
