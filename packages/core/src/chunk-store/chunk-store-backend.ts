import { type Backend, StorageBackend } from "../backend.js";
import { ChunkLayout } from "../chunk-layout.js";
import { ArbitraryStage } from "../stages/arbitrary.js";
import { ChunkedStage } from "../stages/chunked.js";
import { type ChunkStore, fillChunk } from "./chunk-store.js";

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
