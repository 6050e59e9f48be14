/**
 * A deterministic byte pattern, so the demo can verify any byte without
 * keeping a copy: byte `offset` of generation `seed`.
 */
export function patternByte(offset: number, seed: number): number {
  return (Math.imul(offset ^ seed, 2654435761) >>> 24) & 0xff;
}

export function fillPattern(bytes: Uint8Array, offset: number, seed: number): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] = patternByte(offset + i, seed);
}

/** A region overwritten with generation `seed`; everything else holds generation 1. */
export interface Overwrite {
  offset: number;
  length: number;
  seed: number;
}

/** Throws naming the first wrong byte of `bytes` (which start at `start`) given the overwrites applied. */
export function verifyPattern(
  bytes: Uint8Array,
  start: number,
  overwrites: readonly Overwrite[],
  what: string,
): void {
  for (let i = 0; i < bytes.length; i++) {
    const offset = start + i;
    let seed = 1;
    for (const o of overwrites) if (offset >= o.offset && offset < o.offset + o.length) seed = o.seed;
    if (bytes[i] !== patternByte(offset, seed)) throw new Error(`${what}: byte ${offset} is wrong`);
  }
}
