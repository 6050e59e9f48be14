import { describe, expect, it } from "vitest";
import { R3mapError } from "../errors.js";
import { describeBackendConformance, patternBytes } from "../testing/conformance.js";
import type { ChunkCipher } from "./chunk-cipher.js";
import type { ChunkStore } from "./chunk-store.js";
import { openChunkStoreBackend } from "./chunk-store-backend.js";
import { TransformStore } from "./transform-store.js";

const CHUNK = 4096;
const KEY = new Uint8Array(32).map((_, i) => i * 7 + 1);

/** An in-process ChunkStore keeping copies of what it is given, as a remote store would. */
class MapChunkStore implements ChunkStore {
  readonly blobs = new Map<number, Uint8Array>();
  closed = false;
  delete: ((chunk: number) => Promise<void>) | undefined = async (chunk) => {
    this.#check();
    this.blobs.delete(chunk);
  };

  constructor(withDelete = true) {
    if (!withDelete) this.delete = undefined;
  }

  async get(chunk: number): Promise<Uint8Array | undefined> {
    this.#check();
    const blob = this.blobs.get(chunk);
    return blob && new Uint8Array(blob);
  }

  async put(chunk: number, data: Uint8Array): Promise<void> {
    this.#check();
    this.blobs.set(chunk, new Uint8Array(data));
  }

  async sync(): Promise<void> {
    this.#check();
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  #check(): void {
    if (this.closed) throw new R3mapError("ERR_CLOSED", "store closed");
  }
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<R3mapError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected ${code}`).toBeInstanceOf(R3mapError);
  expect((error as R3mapError).code).toBe(code);
  return error as R3mapError;
}

const ciphers: ChunkCipher[] = ["aes-256-gcm", "chacha20-poly1305"];

for (const cipher of ciphers) {
  describeBackendConformance(`transform ${cipher} + deflate over a chunk store`, async (size) =>
    openChunkStoreBackend(
      new TransformStore(new MapChunkStore(), {
        chunkSize: CHUNK,
        encryption: { cipher, key: KEY },
        compression: "deflate",
      }),
      {
        size,
        chunkSize: CHUNK,
      },
    ),
  );
}
describeBackendConformance(
  "transform zeros-only, whole chunks, store without delete",
  async (size) =>
    openChunkStoreBackend(new TransformStore(new MapChunkStore(false), { chunkSize: CHUNK }), {
      size,
      chunkSize: CHUNK,
      wholeChunks: true,
    }),
  { wholeChunks: CHUNK },
);

describe("TransformStore", () => {
  const sealed = (
    store: ChunkStore,
    cipher: ChunkCipher = "aes-256-gcm",
    compression: "none" | "zeros" | "deflate" = "zeros",
  ) => new TransformStore(store, { chunkSize: CHUNK, encryption: { cipher, key: KEY }, compression });

  for (const cipher of ciphers) {
    it(`${cipher}: the store never holds the plaintext, and round-trips`, async () => {
      const raw = new MapChunkStore();
      const store = sealed(raw, cipher, "none");
      const secret = Buffer.from("r3map-known-plaintext-pattern!!!".repeat(CHUNK / 32));
      await store.put(3, secret);
      const blob = Buffer.from(raw.blobs.get(3)!);
      expect(blob.length).toBe(3 + 12 + CHUNK + 16);
      expect(blob.includes(Buffer.from("known-plaintext"))).toBe(false);
      expect(Buffer.compare(Buffer.from((await store.get(3))!), secret)).toBe(0);
    });

    it(`${cipher}: a flipped byte anywhere in a stored chunk fails with ERR_INTEGRITY`, async () => {
      const raw = new MapChunkStore();
      const store = sealed(raw, cipher, "none");
      await store.put(0, patternBytes(CHUNK, 5));
      const original = raw.blobs.get(0)!;
      for (const at of [1, 2, 5, 20, original.length - 1]) {
        const bad = new Uint8Array(original);
        bad[at]! ^= 0x01;
        raw.blobs.set(0, bad);
        await rejectsWith(store.get(0), "ERR_INTEGRITY");
      }
    });
  }

  it("refuses a chunk moved to another index (the index is authenticated)", async () => {
    const raw = new MapChunkStore();
    const store = sealed(raw);
    await store.put(1, patternBytes(CHUNK, 1));
    await store.put(2, patternBytes(CHUNK, 2));
    raw.blobs.set(2, raw.blobs.get(1)!);
    await rejectsWith(store.get(2), "ERR_INTEGRITY");
    expect(Buffer.compare(Buffer.from((await store.get(1))!), patternBytes(CHUNK, 1))).toBe(0);
  });

  it("refuses a downgrade to an unencrypted blob and a wrong key", async () => {
    const raw = new MapChunkStore();
    await new TransformStore(raw, { chunkSize: CHUNK }).put(0, patternBytes(CHUNK, 3));
    await rejectsWith(sealed(raw).get(0), "ERR_INTEGRITY");
    await sealed(raw).put(0, patternBytes(CHUNK, 3));
    const other = new TransformStore(raw, {
      chunkSize: CHUNK,
      encryption: { cipher: "aes-256-gcm", key: new Uint8Array(32) },
    });
    await rejectsWith(other.get(0), "ERR_INTEGRITY");
    await rejectsWith(new TransformStore(raw, { chunkSize: CHUNK }).get(0), "ERR_INVALID_ARGUMENT");
  });

  it("elides zero chunks: deleted when the store can delete, a sealed marker otherwise", async () => {
    const deleting = new MapChunkStore();
    const a = sealed(deleting);
    await a.put(4, patternBytes(CHUNK, 9));
    await a.put(4, new Uint8Array(CHUNK));
    expect(deleting.blobs.has(4)).toBe(false);
    expect(await a.get(4)).toBeUndefined();

    const keeping = new MapChunkStore(false);
    const b = sealed(keeping);
    await b.put(4, new Uint8Array(CHUNK));
    const marker = keeping.blobs.get(4)!;
    expect(marker.length).toBe(3 + 12 + 16);
    expect(await b.get(4)).toBeUndefined();
    // The marker is authenticated too: it cannot be replayed onto another chunk.
    keeping.blobs.set(5, marker);
    await rejectsWith(b.get(5), "ERR_INTEGRITY");
  });

  it("compresses compressible chunks and bounds decompression to a chunk", async () => {
    const raw = new MapChunkStore();
    const store = new TransformStore(raw, { chunkSize: CHUNK, compression: "deflate" });
    const text = Buffer.alloc(CHUNK, "abcd");
    await store.put(0, text);
    expect(raw.blobs.get(0)!.length).toBeLessThan(CHUNK / 4);
    expect(Buffer.compare(Buffer.from((await store.get(0))!), text)).toBe(0);
    // Random data is stored as is, not inflated by the compressor.
    await store.put(1, patternBytes(CHUNK, 4));
    expect(raw.blobs.get(1)!.length).toBe(2 + CHUNK);
    // A blob that inflates past the chunk size (a decompression bomb) is refused.
    const bigger = new TransformStore(raw, { chunkSize: CHUNK * 4, compression: "deflate" });
    await bigger.put(2, Buffer.alloc(CHUNK * 4, "x"));
    await rejectsWith(store.get(2), "ERR_INTEGRITY");
  });

  it("validates its options", () => {
    expect(
      () =>
        new TransformStore(new MapChunkStore(), {
          chunkSize: CHUNK,
          encryption: { cipher: "aes-256-gcm", key: new Uint8Array(16) },
        }),
    ).toThrow(/32 bytes/);
    expect(() => new TransformStore(new MapChunkStore(), { chunkSize: 0 })).toThrow(R3mapError);
    expect(
      () =>
        new TransformStore(new MapChunkStore(), {
          chunkSize: CHUNK,
          encryption: { cipher: "des" as ChunkCipher, key: KEY },
        }),
    ).toThrow(/unknown cipher/);
  });
});
