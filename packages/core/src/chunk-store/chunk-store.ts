import { StorageBackend } from "../backend.js";
import { ChunkLayout } from "../chunk-layout.js";
import { R3mapError } from "../errors.js";

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
