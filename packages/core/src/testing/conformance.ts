import { afterEach, describe, expect, it } from "vitest";
import type { Backend } from "../backend.js";
import { isR3mapError } from "../errors.js";

export interface ConformanceOptions {
  /** Resource size the suite asks for (default 1 MiB + 3 × 4 KiB + 512: not a power of two, so tails are tested). */
  size?: number;
  /**
   * When set, the backend takes only whole chunks of this size (a ChunkedStage
   * or a chunk-keyed store): the suite then sends only whole chunks, and checks
   * that anything else is refused with ERR_MISALIGNED.
   */
  wholeChunks?: number;
  /** Reopens the same resource after `close()`; enables the durability test. */
  reopen?: (size: number) => Promise<Backend>;
  /** Per-test timeout in milliseconds (remote stores are slower). */
  timeoutMs?: number;
}

/** A deterministic pseudo-random byte pattern (xorshift), so failures reproduce. */
export function patternBytes(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let x = seed | 0 || 0x9e3779b9;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

async function expectCode(promise: Promise<unknown>, ...codes: string[]): Promise<void> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected an error with code ${codes.join(" or ")}`).toBeDefined();
  expect(isR3mapError(caught), `expected an R3mapError, got ${String(caught)}`).toBe(true);
  expect(codes).toContain((caught as { code: string }).code);
}

/**
 * The contract every Backend keeps (see `Backend` in @r3map/core). Call it
 * inside a test file with a factory that returns a fresh, empty backend of the
 * given size, backed by a real instance of the store:
 *
 * ```ts
 * describeBackendConformance("memory", async (size) => new MemoryBackend(size));
 * ```
 */
export function describeBackendConformance(
  name: string,
  create: (size: number) => Promise<Backend>,
  options: ConformanceOptions = {},
): void {
  const chunk = options.wholeChunks;
  const size = options.size ?? 1024 * 1024 + 3 * 4096 + 512;
  const timeout = options.timeoutMs ?? 30_000;

  describe(`Backend conformance: ${name}`, () => {
    const opened: Backend[] = [];
    const open = async () => {
      const backend = await create(size);
      opened.push(backend);
      return backend;
    };
    afterEach(async () => {
      await Promise.allSettled(opened.splice(0).map((backend) => backend.close()));
    });

    /** Requests the suite may send: whole chunks only, or anything. */
    const requests = (): Array<[offset: number, length: number]> => {
      if (chunk) {
        const count = Math.ceil(size / chunk);
        const picks = [0, 1, Math.floor(count / 2), count - 1].filter(
          (c, i, all) => c >= 0 && all.indexOf(c) === i,
        );
        return picks.map((c) => [c * chunk, Math.min(chunk, size - c * chunk)]);
      }
      const lengths = [1, 7, 511, 512, 513, 4095, 4096, 4097, 65536 + 3];
      const offsets = [0, 1, 511, 4095, 4096, 65535 + 7, size - 1];
      const out: Array<[number, number]> = [];
      for (const offset of offsets) {
        for (const length of lengths) if (offset + length <= size) out.push([offset, length]);
      }
      out.push([size - 4097, 4097]);
      return out;
    };

    it("reports its size", { timeout }, async () => {
      const backend = await open();
      expect(backend.size).toBe(size);
    });

    it("reads zeros where nothing was written, overwriting the caller's buffer", { timeout }, async () => {
      const backend = await open();
      const step = chunk ?? 65536;
      for (let offset = 0; offset < size; offset += step) {
        const buffer = new Uint8Array(Math.min(step, size - offset)).fill(0xa5);
        await backend.readAt(buffer, offset);
        expect(
          buffer.every((byte) => byte === 0),
          `bytes at ${offset} are not all zero`,
        ).toBe(true);
      }
    });

    it("round-trips writes at every alignment and length", { timeout }, async () => {
      const backend = await open();
      let seed = 1;
      for (const [offset, length] of requests()) {
        const data = patternBytes(length, seed++);
        await backend.writeAt(data, offset);
        const back = new Uint8Array(length);
        await backend.readAt(back, offset);
        expect(Buffer.compare(back, data), `round trip at ${offset}+${length}`).toBe(0);
      }
    });

    it("matches a reference model after overlapping writes", { timeout }, async () => {
      const backend = await open();
      const model = new Uint8Array(size);
      let seed = 100;
      for (const [offset, length] of [...requests(), ...requests().reverse()]) {
        const data = patternBytes(length, seed++);
        await backend.writeAt(data, offset);
        model.set(data, offset);
      }
      const all = new Uint8Array(size);
      const step = chunk ?? 256 * 1024;
      for (let offset = 0; offset < size; offset += step) {
        await backend.readAt(all.subarray(offset, Math.min(size, offset + step)), offset);
      }
      expect(Buffer.compare(all, model)).toBe(0);
    });

    it("keeps concurrent writes to distinct chunks apart", { timeout }, async () => {
      const backend = await open();
      const unit = chunk ?? 4096;
      const count = Math.min(32, Math.floor(size / unit));
      const datas = Array.from({ length: count }, (_, i) => patternBytes(unit, 1000 + i));
      await Promise.all(datas.map((data, i) => backend.writeAt(data, i * unit)));
      const backs = datas.map(() => new Uint8Array(unit));
      await Promise.all(backs.map((back, i) => backend.readAt(back, i * unit)));
      for (const [i, back] of backs.entries()) expect(Buffer.compare(back, datas[i]!), `chunk ${i}`).toBe(0);
    });

    it("refuses requests outside the resource with typed errors", { timeout }, async () => {
      const backend = await open();
      const unit = chunk ?? 16;
      await expectCode(backend.readAt(new Uint8Array(unit), size), "ERR_OUT_OF_RANGE");
      await expectCode(backend.writeAt(new Uint8Array(unit), size), "ERR_OUT_OF_RANGE");
      await expectCode(
        backend.readAt(new Uint8Array(unit), -unit),
        "ERR_INVALID_ARGUMENT",
        "ERR_OUT_OF_RANGE",
      );
      if (!chunk) {
        await expectCode(backend.readAt(new Uint8Array(32), size - 16), "ERR_OUT_OF_RANGE");
        await expectCode(backend.writeAt(new Uint8Array(32), size - 16), "ERR_OUT_OF_RANGE");
        await expectCode(backend.readAt(new Uint8Array(1), 0.5), "ERR_INVALID_ARGUMENT");
      }
      // The refused write changed nothing.
      const tail = new Uint8Array(16);
      await backend.readAt(tail, size - 16).catch(() => backend.readAt(new Uint8Array(chunk!), 0));
      if (!chunk) expect(tail.every((byte) => byte === 0)).toBe(true);
    });

    if (chunk) {
      it("refuses partial and misaligned chunks with ERR_MISALIGNED", { timeout }, async () => {
        const backend = await open();
        await expectCode(backend.readAt(new Uint8Array(chunk), 1), "ERR_MISALIGNED");
        await expectCode(backend.writeAt(new Uint8Array(chunk), chunk / 2), "ERR_MISALIGNED");
        await expectCode(backend.readAt(new Uint8Array(chunk - 1), 0), "ERR_MISALIGNED");
        await expectCode(backend.writeAt(new Uint8Array(chunk + 1), 0), "ERR_MISALIGNED", "ERR_OUT_OF_RANGE");
      });
    }

    it("syncs, closes idempotently and refuses I/O after close", { timeout }, async () => {
      const backend = await open();
      const unit = chunk ?? 4096;
      await backend.writeAt(patternBytes(unit, 7), 0);
      await backend.sync();
      await Promise.all([backend.close(), backend.close()]);
      await backend.close();
      await expectCode(backend.readAt(new Uint8Array(unit), 0), "ERR_CLOSED");
      await expectCode(backend.writeAt(new Uint8Array(unit), 0), "ERR_CLOSED");
    });

    const reopen = options.reopen;
    if (reopen) {
      it("keeps written data across close and reopen", { timeout }, async () => {
        const backend = await open();
        const unit = chunk ?? 4096;
        const data = patternBytes(unit, 99);
        const last = Math.floor((size - 1) / unit) * unit;
        await backend.writeAt(data.subarray(0, Math.min(unit, size - last)), last);
        await backend.writeAt(data, 0);
        await backend.close();
        const again = await reopen(size);
        opened.push(again);
        const back = new Uint8Array(unit);
        await again.readAt(back, 0);
        expect(Buffer.compare(back, data)).toBe(0);
        const tail = new Uint8Array(Math.min(unit, size - last));
        await again.readAt(tail, last);
        expect(Buffer.compare(tail, data.subarray(0, tail.length))).toBe(0);
      });
    }
  });
}
