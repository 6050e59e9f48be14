import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { R3mapError } from "../errors.js";
import { FLAG_SEALED, FORMAT_V1, integrityError } from "./blob-format.js";

/** Authenticated ciphers for `TransformStore`; both take a 32-byte key, a 96-bit nonce and a 16-byte tag. */
export type ChunkCipher = "aes-256-gcm" | "chacha20-poly1305";

const CIPHER_IDS: Record<ChunkCipher, number> = { "aes-256-gcm": 1, "chacha20-poly1305": 2 };
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const AAD_LABEL = Buffer.from("r3map/chunk/v1\0");

/**
 * Seals and opens blobs with one key: the header (version, flags with the
 * sealed bit, cipher id) and the chunk index are authenticated with the
 * ciphertext, so a chunk moved to another index, a flipped flag or a modified
 * byte fails with ERR_INTEGRITY. Random 96-bit nonces keep the collision risk
 * negligible up to about 2^32 writes per key.
 */
export class ChunkSealer {
  readonly #cipher: ChunkCipher;
  readonly #key: Buffer;

  constructor(cipher: ChunkCipher, key: Uint8Array) {
    if (!(cipher in CIPHER_IDS)) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `unknown cipher "${cipher}"; use aes-256-gcm or chacha20-poly1305`,
      );
    }
    if (key.length !== 32) {
      throw new R3mapError("ERR_INVALID_ARGUMENT", `the encryption key must be 32 bytes, got ${key.length}`);
    }
    this.#cipher = cipher;
    this.#key = Buffer.from(key); // a private copy the caller cannot change
  }

  /** The sealed blob of `payload` for `chunk`: header, nonce, ciphertext, tag. */
  seal(chunk: number, flags: number, payload: Buffer): Buffer {
    const header = Buffer.from([FORMAT_V1, flags | FLAG_SEALED, CIPHER_IDS[this.#cipher]]);
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv(gcmTyped(this.#cipher), this.#key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(associatedData(header, chunk));
    const body = Buffer.concat([cipher.update(payload), cipher.final()]);
    return Buffer.concat([header, nonce, body, cipher.getAuthTag()]);
  }

  /** Authenticates and decrypts a sealed blob of `chunk`, whose payload is at most `maxPayload` bytes. */
  open(chunk: number, blob: Buffer, maxPayload: number): Buffer {
    const header = blob.subarray(0, 3);
    if (blob.length < 3 + NONCE_BYTES + TAG_BYTES || header[2] !== CIPHER_IDS[this.#cipher]) {
      throw integrityError(chunk, "it is truncated or sealed with another cipher");
    }
    const nonce = blob.subarray(3, 3 + NONCE_BYTES);
    const body = blob.subarray(3 + NONCE_BYTES, blob.length - TAG_BYTES);
    if (body.length > maxPayload) throw integrityError(chunk, "it is longer than a chunk");
    const decipher = createDecipheriv(gcmTyped(this.#cipher), this.#key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(associatedData(header, chunk));
    decipher.setAuthTag(blob.subarray(blob.length - TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(body), decipher.final()]);
    } catch (error) {
      throw integrityError(
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
