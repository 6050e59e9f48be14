import { ChunkLayout } from "../chunk-layout.js";
import { R3mapError } from "../errors.js";
import { FLAG_SEALED, FLAG_ZERO, FORMAT_V1, integrityError } from "./blob-format.js";
import { type ChunkCipher, ChunkSealer } from "./chunk-cipher.js";
import { type ChunkCompression, ChunkCompressor } from "./chunk-compression.js";
import type { ChunkStore } from "./chunk-store.js";

export interface TransformOptions {
  /** Plaintext chunk size: bounds decompression, and must match the backend's chunk size. */
  chunkSize: number;
  encryption?: { cipher: ChunkCipher; key: Uint8Array } | undefined;
  compression?: ChunkCompression | undefined;
}

/**
 * A ChunkStore over another ChunkStore that encrypts, authenticates and
 * compresses each chunk, so the store underneath never sees plaintext. The
 * blobs follow `blob-format.ts`; `ChunkCompressor` elides and compresses,
 * `ChunkSealer` encrypts and authenticates.
 *
 * With a key configured, unsealed blobs are refused (no downgrade). What it
 * does not protect against (document for users): a store that serves an older
 * version of the same chunk or deletes it (reads as zeros) — there is no
 * freshness check; the stored size reveals which chunks are zero (elision)
 * and, with DEFLATE, how compressible each chunk is; rotate keys before about
 * 2^32 writes (random nonces).
 */
export class TransformStore implements ChunkStore {
  readonly #inner: ChunkStore;
  readonly #chunkSize: number;
  readonly #compressor: ChunkCompressor;
  readonly #sealer: ChunkSealer | undefined;
  readonly delete: ((chunk: number) => Promise<void>) | undefined;

  constructor(inner: ChunkStore, options: TransformOptions) {
    new ChunkLayout(options.chunkSize, options.chunkSize); // validates chunkSize
    this.#inner = inner;
    this.#chunkSize = options.chunkSize;
    this.#compressor = new ChunkCompressor(options.compression ?? "zeros", options.chunkSize);
    const encryption = options.encryption;
    if (encryption) this.#sealer = new ChunkSealer(encryption.cipher, encryption.key);
    this.delete = inner.delete ? (chunk) => inner.delete!(chunk) : undefined;
  }

  async get(chunk: number): Promise<Uint8Array | undefined> {
    const blob = await this.#inner.get(chunk);
    if (blob === undefined) return undefined;
    const bytes = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
    if (bytes.length < 2 || bytes[0] !== FORMAT_V1) {
      throw integrityError(chunk, "it was not written by r3map's transform (unknown format)");
    }
    const flags = bytes[1]!;
    let payload: Buffer;
    if (flags & FLAG_SEALED) payload = this.#open(chunk, bytes);
    else if (this.#sealer) throw integrityError(chunk, "it is stored unencrypted but a key is configured");
    else payload = bytes.subarray(2);
    if (flags & FLAG_ZERO) {
      if (payload.length !== 0) throw integrityError(chunk, "a zero-chunk marker carries data");
      return undefined;
    }
    return this.#compressor.decompress(chunk, flags, payload);
  }

  async put(chunk: number, data: Uint8Array): Promise<void> {
    const plain = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (this.#compressor.elides(plain)) {
      if (this.#inner.delete) return this.#inner.delete(chunk);
      return this.#inner.put(chunk, this.#seal(chunk, FLAG_ZERO, Buffer.alloc(0)));
    }
    const { flags, payload } = this.#compressor.compress(plain);
    await this.#inner.put(chunk, this.#seal(chunk, flags, payload));
  }

  sync(): Promise<void> {
    return this.#inner.sync();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  /** Header + payload, encrypted when a key is configured. Always a fresh buffer. */
  #seal(chunk: number, flags: number, payload: Buffer): Buffer {
    if (!this.#sealer) return Buffer.concat([Buffer.from([FORMAT_V1, flags]), payload]);
    return this.#sealer.seal(chunk, flags, payload);
  }

  /** Authenticates and decrypts a sealed blob; returns the payload. */
  #open(chunk: number, bytes: Buffer): Buffer {
    if (!this.#sealer) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `stored chunk ${chunk} is encrypted: open the store with its key`,
      );
    }
    return this.#sealer.open(chunk, bytes, this.#chunkSize);
  }
}
