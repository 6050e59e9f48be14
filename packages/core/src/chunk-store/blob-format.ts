import { R3mapError } from "../errors.js";

/**
 * The layout of a blob `TransformStore` writes (version 1):
 *
 * ```
 * byte 0      format version (1)
 * byte 1      flags: 1 = zero chunk (no payload), 2 = DEFLATE, 4 = sealed
 * sealed:     byte 2 cipher id (1 AES-256-GCM, 2 ChaCha20-Poly1305),
 *             12-byte random nonce, ciphertext, 16-byte tag
 * not sealed: the payload
 * ```
 */
export const FORMAT_V1 = 1;
export const FLAG_ZERO = 1;
export const FLAG_DEFLATE = 2;
export const FLAG_SEALED = 4;

/** A stored chunk that must not be trusted: changed, moved, truncated or of another format. */
export function integrityError(chunk: number, why: string, cause?: unknown): R3mapError {
  return new R3mapError(
    "ERR_INTEGRITY",
    `stored chunk ${chunk} is not trustworthy: ${why}`,
    cause === undefined ? {} : { cause },
  );
}
