import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { deflateRawSync, inflateRawSync } from "node:zlib";
import { type Backend, StorageBackend } from "../backend.js";
import { ChunkLayout } from "../chunk-layout.js";
import { R3mapError } from "../errors.js";
import { ArbitraryStage } from "./arbitrary.js";
import { ChunkedStage } from "./chunked.js";

/**
 * A store of blobs keyed by chunk index: what a chunk-keyed remote store
 * (Redis key, S3 object, Cassandra row, …) offers underneath a Backend. Blobs
 * may be shorter or longer than a chunk (a transform stores ciphertext with a
 * header); `get` resolves `undefined` for a chunk that was never stored.
 *
 * `put` must not keep `data` after it resolves (callers reuse their buffers).
 * After `close`, calls reject with ERR_CLOSED.
 */
export interface ChunkStore {
  get(chunk: number): Promise<Uint8Array | undefined>;
  put(chunk: number, data: Uint8Array): Promise<void>;
  /** Removes a chunk; it then reads as never written. Optional. */
  readonly delete?: ((chunk: number) => Promise<void>) | undefined;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Copies a stored chunk into `target` (exactly one chunk long) and zero-fills
 * the rest, so a missing or short blob reads as zeros and no stale byte of the
 * caller's buffer survives (the original r3map returned missing keys without
 * zeroing). A blob longer than the chunk is corrupt.
 */
export function fillChunk(target: Uint8Array, data: Uint8Array | undefined, chunk: number): void {
  if (data === undefined) {
    target.fill(0);
    return;
  }
  if (data.length > target.length) {
    throw new R3mapError(
      "ERR_INTEGRITY",
      `stored chunk ${chunk} is ${data.length} bytes, more than the chunk's ${target.length}: the store holds data of another layout (chunk size) or a transformed chunk read without its transform`,
    );
  }
  target.set(data);
  target.fill(0, data.length);
}

/**
 * Base for a remote store that keeps one blob per chunk (a Redis key, an S3
 * object, a Cassandra row) and is at once a `ChunkStore` (for a transform to
 * sit on) and a whole-chunk Backend: subclasses write `get`, `put`, the
 * optional `delete`, and the lifecycle; reads zero-fill missing chunks.
 */
export abstract class KeyedChunkStore extends StorageBackend implements ChunkStore {
  readonly layout: ChunkLayout;

  constructor(size: number, chunkSize: number, readOnly = false) {
    super(size, readOnly);
    this.layout = new ChunkLayout(size, chunkSize);
  }

  abstract get(chunk: number): Promise<Uint8Array | undefined>;
  abstract put(chunk: number, data: Uint8Array): Promise<void>;
  declare readonly delete?: ((chunk: number) => Promise<void>) | undefined;

  protected async read(buffer: Uint8Array, offset: number): Promise<void> {
    const chunk = this.layout.indexOf(offset);
    fillChunk(buffer, await this.get(chunk), chunk);
  }

  protected write(buffer: Uint8Array, offset: number): Promise<void> {
    return this.put(this.layout.indexOf(offset), buffer);
  }

  /** Throws ERR_READ_ONLY for a store opened read-only (for `put` and `delete`). */
  protected assertWritable(): void {
    if (this.readOnly)
      throw new R3mapError("ERR_READ_ONLY", `this ${this.constructor.name} was opened read-only`);
  }
}

export interface ChunkStoreBackendOptions {
  size: number;
  chunkSize: number;
  readOnly?: boolean;
}

/**
 * A Backend over a ChunkStore that takes whole chunks only (chunk `i` at offset
 * `i × chunkSize`); wrap it with `openChunkStoreBackend` for validation and
 * arbitrary ranges. Closing it closes the store.
 */
export class ChunkStoreBackend extends StorageBackend {
  readonly layout: ChunkLayout;

  constructor(
    readonly store: ChunkStore,
    options: ChunkStoreBackendOptions,
  ) {
    super(options.size, options.readOnly);
    this.layout = new ChunkLayout(options.size, options.chunkSize);
  }

  protected async read(buffer: Uint8Array, offset: number): Promise<void> {
    const chunk = this.layout.indexOf(offset);
    fillChunk(buffer, await this.store.get(chunk), chunk);
  }

  protected write(buffer: Uint8Array, offset: number): Promise<void> {
    return this.store.put(this.layout.indexOf(offset), buffer);
  }

  protected flush(): Promise<void> {
    return this.store.sync();
  }

  protected release(): Promise<void> {
    return this.store.close();
  }
}

/**
 * The Backend a chunk store is used through: whole chunks validated by a
 * ChunkedStage (misaligned calls fail with ERR_MISALIGNED), and, unless
 * `wholeChunks` is set, any (offset, length) mapped onto them by an
 * ArbitraryStage (partial chunks are read-modify-written).
 */
export function openChunkStoreBackend(
  store: ChunkStore,
  options: ChunkStoreBackendOptions & { wholeChunks?: boolean },
): Backend {
  const chunked = new ChunkedStage(new ChunkStoreBackend(store, options), options.chunkSize);
  return options.wholeChunks ? chunked : new ArbitraryStage(chunked, options.chunkSize);
}

/** Authenticated ciphers for `TransformStore`; both take a 32-byte key, a 96-bit nonce and a 16-byte tag. */
export type ChunkCipher = "aes-256-gcm" | "chacha20-poly1305";

/**
 * What `TransformStore` does before a chunk reaches the store:
 * - `"none"`: nothing;
 * - `"zeros"` (default): an all-zero chunk is deleted (or, for stores without
 *   `delete`, stored as a header-only marker), so never-written and
 *   written-zero chunks both read as zeros and cost nothing;
 * - `"deflate"`: zero elision plus raw DEFLATE (level 1) when it makes the chunk smaller.
 */
export type ChunkCompression = "none" | "zeros" | "deflate";

export interface TransformOptions {
  /** Plaintext chunk size: bounds decompression, and must match the backend's chunk size. */
  chunkSize: number;
  encryption?: { cipher: ChunkCipher; key: Uint8Array } | undefined;
  compression?: ChunkCompression | undefined;
}

const FORMAT_V1 = 1;
const FLAG_ZERO = 1;
const FLAG_DEFLATE = 2;
const FLAG_SEALED = 4;
const CIPHER_IDS: Record<ChunkCipher, number> = { "aes-256-gcm": 1, "chacha20-poly1305": 2 };
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const AAD_LABEL = Buffer.from("r3map/chunk/v1\0");

// Synchronous on purpose: zlib's async API runs on the libuv threadpool, which
// threads blocked on a mount can exhaust (docs/threading.md). A chunk is small.
const deflate = deflateRawSync;
const inflate = inflateRawSync;

/**
 * A ChunkStore over another ChunkStore that encrypts, authenticates and
 * compresses each chunk, so the store underneath never sees plaintext.
 *
 * Stored blob layout (version 1):
 *
 * ```
 * byte 0      format version (1)
 * byte 1      flags: 1 = zero chunk (no payload), 2 = DEFLATE, 4 = sealed
 * sealed:     byte 2 cipher id (1 AES-256-GCM, 2 ChaCha20-Poly1305),
 *             12-byte random nonce, ciphertext, 16-byte tag
 * not sealed: the payload
 * ```
 *
 * The associated data binds the header and the chunk index (64-bit big
 * endian), so a chunk moved to another index, a flipped flag or a modified byte
 * fails with ERR_INTEGRITY; with a key configured, unsealed blobs are refused
 * (no downgrade). What it does not protect against (document for users): a
 * store that serves an older version of the same chunk or deletes it (reads as
 * zeros) — there is no freshness check; the stored size reveals which chunks
 * are zero (elision) and, with DEFLATE, how compressible each chunk is; random
 * 96-bit nonces keep the collision risk negligible up to about 2^32 writes per
 * key, so rotate keys before that.
 */
export class TransformStore implements ChunkStore {
  readonly #inner: ChunkStore;
  readonly #chunkSize: number;
  readonly #compression: ChunkCompression;
  readonly #cipher: ChunkCipher | undefined;
  readonly #key: Buffer | undefined;
  readonly #zeros: Buffer;
  readonly delete: ((chunk: number) => Promise<void>) | undefined;

  constructor(inner: ChunkStore, options: TransformOptions) {
    new ChunkLayout(options.chunkSize, options.chunkSize); // validates chunkSize
    this.#inner = inner;
    this.#chunkSize = options.chunkSize;
    this.#compression = options.compression ?? "zeros";
    if (!["none", "zeros", "deflate"].includes(this.#compression)) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `unknown compression "${this.#compression}"; use none, zeros or deflate`,
      );
    }
    const encryption = options.encryption;
    if (encryption) {
      if (!(encryption.cipher in CIPHER_IDS)) {
        throw new R3mapError(
          "ERR_INVALID_ARGUMENT",
          `unknown cipher "${encryption.cipher}"; use aes-256-gcm or chacha20-poly1305`,
        );
      }
      if (encryption.key.length !== 32) {
        throw new R3mapError(
          "ERR_INVALID_ARGUMENT",
          `the encryption key must be 32 bytes, got ${encryption.key.length}`,
        );
      }
      this.#cipher = encryption.cipher;
      this.#key = Buffer.from(encryption.key); // a private copy the caller cannot change
    }
    this.#zeros = Buffer.alloc(this.#chunkSize);
    this.delete = inner.delete ? (chunk) => inner.delete!(chunk) : undefined;
  }

  async get(chunk: number): Promise<Uint8Array | undefined> {
    const blob = await this.#inner.get(chunk);
    if (blob === undefined) return undefined;
    const bytes = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
    if (bytes.length < 2 || bytes[0] !== FORMAT_V1) {
      throw integrity(chunk, "it was not written by r3map's transform (unknown format)");
    }
    const flags = bytes[1]!;
    let payload: Buffer;
    if (flags & FLAG_SEALED) payload = this.#open(chunk, bytes);
    else if (this.#key) throw integrity(chunk, "it is stored unencrypted but a key is configured");
    else payload = bytes.subarray(2);
    if (flags & FLAG_ZERO) {
      if (payload.length !== 0) throw integrity(chunk, "a zero-chunk marker carries data");
      return undefined;
    }
    if (flags & FLAG_DEFLATE) {
      try {
        payload = inflate(payload, { maxOutputLength: this.#chunkSize });
      } catch (error) {
        throw new R3mapError(
          "ERR_INTEGRITY",
          `stored chunk ${chunk} does not decompress: ${(error as Error).message}`,
          { cause: error },
        );
      }
    }
    return payload;
  }

  async put(chunk: number, data: Uint8Array): Promise<void> {
    const plain = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (this.#compression !== "none" && this.#isZero(plain)) {
      if (this.#inner.delete) return this.#inner.delete(chunk);
      return this.#inner.put(chunk, this.#seal(chunk, FLAG_ZERO, Buffer.alloc(0)));
    }
    let flags = 0;
    let payload = plain;
    if (this.#compression === "deflate") {
      const packed = deflate(plain, { level: 1 });
      if (packed.length < plain.length) {
        payload = packed;
        flags |= FLAG_DEFLATE;
      }
    }
    await this.#inner.put(chunk, this.#seal(chunk, flags, payload));
  }

  sync(): Promise<void> {
    return this.#inner.sync();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  #isZero(bytes: Buffer): boolean {
    if (bytes.length > this.#zeros.length) return false;
    return bytes.equals(this.#zeros.subarray(0, bytes.length));
  }

  /** Header + payload, encrypted when a key is configured. Always a fresh buffer. */
  #seal(chunk: number, flags: number, payload: Buffer): Buffer {
    if (!this.#key || !this.#cipher) return Buffer.concat([Buffer.from([FORMAT_V1, flags]), payload]);
    const header = Buffer.from([FORMAT_V1, flags | FLAG_SEALED, CIPHER_IDS[this.#cipher]]);
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv(gcmTyped(this.#cipher), this.#key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(associatedData(header, chunk));
    const body = Buffer.concat([cipher.update(payload), cipher.final()]);
    return Buffer.concat([header, nonce, body, cipher.getAuthTag()]);
  }

  /** Authenticates and decrypts a sealed blob; returns the payload. */
  #open(chunk: number, bytes: Buffer): Buffer {
    if (!this.#key || !this.#cipher) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `stored chunk ${chunk} is encrypted: open the store with its key`,
      );
    }
    const header = bytes.subarray(0, 3);
    if (bytes.length < 3 + NONCE_BYTES + TAG_BYTES || header[2] !== CIPHER_IDS[this.#cipher]) {
      throw integrity(chunk, "it is truncated or sealed with another cipher");
    }
    const nonce = bytes.subarray(3, 3 + NONCE_BYTES);
    const body = bytes.subarray(3 + NONCE_BYTES, bytes.length - TAG_BYTES);
    if (body.length > this.#chunkSize) throw integrity(chunk, "it is longer than a chunk");
    const decipher = createDecipheriv(gcmTyped(this.#cipher), this.#key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(associatedData(header, chunk));
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(body), decipher.final()]);
    } catch (error) {
      throw integrity(
        chunk,
        "authentication failed: it was modified, moved from another chunk, or sealed with another key",
        error,
      );
    }
  }
}

/** Node's typings overload per cipher family; both AEADs share the GCM-shaped API (setAAD, tags). */
function gcmTyped(cipher: ChunkCipher): "aes-256-gcm" {
  return cipher as "aes-256-gcm";
}

function associatedData(header: Buffer, chunk: number): Buffer {
  const index = Buffer.alloc(8);
  index.writeBigUInt64BE(BigInt(chunk));
  return Buffer.concat([AAD_LABEL, header, index]);
}

function integrity(chunk: number, why: string, cause?: unknown): R3mapError {
  return new R3mapError(
    "ERR_INTEGRITY",
    `stored chunk ${chunk} is not trustworthy: ${why}`,
    cause === undefined ? {} : { cause },
  );
}
