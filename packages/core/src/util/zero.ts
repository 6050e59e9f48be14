let zeros = new Uint8Array(0);

/** Whether every byte of `bytes` is zero (a memcmp against a shared zero buffer). */
export function isAllZero(bytes: Uint8Array): boolean {
  if (zeros.length < bytes.length) zeros = new Uint8Array(bytes.length);
  return Buffer.compare(bytes, zeros.subarray(0, bytes.length)) === 0;
}
