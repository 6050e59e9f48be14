import type { Backend } from "../backend.js";
import { ChunkLayout } from "../chunk-layout.js";
import { Stage } from "./stage.js";

/**
 * Records which chunks are written after `track()` — the seeder's dirty set
 * during a migration. Any range may be written; every chunk it touches counts.
 * Chunks are reported once each, in the order they were first written.
 */
export class TrackingStage extends Stage {
  readonly layout: ChunkLayout;
  #dirty: Set<number> | undefined;

  constructor(inner: Backend, chunkSize: number) {
    super(inner);
    this.layout = new ChunkLayout(inner.size, chunkSize);
  }

  get tracking(): boolean {
    return this.#dirty !== undefined;
  }

  /** Starts recording (again, from an empty set). */
  track(): void {
    this.#dirty = new Set();
  }

  /** Returns the chunks written since `track()` or the previous call, and keeps recording. */
  takeDirty(): number[] {
    const dirty = [...(this.#dirty ?? [])];
    if (this.#dirty) this.#dirty = new Set();
    return dirty;
  }

  /** Returns the chunks written since `track()` or the last `takeDirty()`, and stops recording. */
  stopTracking(): number[] {
    const dirty = this.takeDirty();
    this.#dirty = undefined;
    return dirty;
  }

  /** Records chunks written behind the stage's back (native code, a mapped memory), while tracking. */
  recordChunks(chunks: Iterable<number>): void {
    if (!this.#dirty) return;
    for (const chunk of chunks) this.#dirty.add(chunk);
  }

  override async writeAt(buffer: Uint8Array, offset: number): Promise<void> {
    await this.inner.writeAt(buffer, offset);
    // Recorded after the write lands, so a reader of the dirty set never sees a
    // chunk whose new bytes are not yet readable.
    this.#record(offset, buffer.length);
  }

  protected override async trimRange(offset: number, length: number): Promise<void> {
    await super.trimRange(offset, length);
    this.#record(offset, length);
  }

  protected override async zeroRange(offset: number, length: number): Promise<void> {
    await super.zeroRange(offset, length);
    this.#record(offset, length);
  }

  #record(offset: number, length: number): void {
    if (!this.#dirty) return;
    const [first, end] = this.layout.span(offset, length);
    for (let chunk = first; chunk < end; chunk++) this.#dirty.add(chunk);
  }
}
