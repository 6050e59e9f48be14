import type { Backend } from "../backend.js";
import { ChunkLayout, checkRange } from "../chunk-layout.js";
import { KeyedMutex } from "../util/keyed-mutex.js";
import { Stage } from "./stage.js";

/**
 * Turns any (offset, length) into calls on whole, aligned chunks of the inner
 * backend. A chunk the request fully covers is passed through without a copy;
 * a partly covered one is read into a fresh chunk buffer (never a reused one,
 * so no stale bytes can leak) and, for writes, modified and written back.
 *
 * Read-modify-write is serialized per chunk, so two partial writes to the same
 * chunk cannot lose each other's bytes. Chunks of one request run concurrently.
 */
export class ArbitraryStage extends Stage {
  readonly layout: ChunkLayout;
  readonly #writes = new KeyedMutex();

  /** Partial chunks cost a read-modify-write here. */
  override get byteRanges(): boolean {
    return false;
  }

  constructor(inner: Backend, chunkSize: number) {
    super(inner);
    this.layout = new ChunkLayout(inner.size, chunkSize);
  }

  override async readAt(buffer: Uint8Array, offset: number): Promise<void> {
    checkRange(this.size, offset, buffer.length);
    await this.#eachChunk(offset, buffer.length, async (_chunk, chunkOffset, chunkLength, from, to) => {
      const target = buffer.subarray(from - offset, to - offset);
      if (from === chunkOffset && to === chunkOffset + chunkLength) {
        await this.inner.readAt(target, chunkOffset);
        return;
      }
      const whole = new Uint8Array(chunkLength);
      await this.inner.readAt(whole, chunkOffset);
      target.set(whole.subarray(from - chunkOffset, to - chunkOffset));
    });
  }

  override async writeAt(buffer: Uint8Array, offset: number): Promise<void> {
    checkRange(this.size, offset, buffer.length);
    await this.#eachChunk(offset, buffer.length, (chunk, chunkOffset, chunkLength, from, to) => {
      const source = buffer.subarray(from - offset, to - offset);
      return this.#writes.run(chunk, async () => {
        if (from === chunkOffset && to === chunkOffset + chunkLength) {
          await this.inner.writeAt(source, chunkOffset);
          return;
        }
        const whole = new Uint8Array(chunkLength);
        await this.inner.readAt(whole, chunkOffset);
        whole.set(source, from - chunkOffset);
        await this.inner.writeAt(whole, chunkOffset);
      });
    });
  }

  /**
   * Whole chunks of the range are trimmed below; a partly covered chunk is
   * read, zeroed in the range and written back (a trimmed range reads as
   * zeros), under the same per-chunk lock as writes.
   */
  protected override trimRange(offset: number, length: number): Promise<void> {
    return this.#zeroChunks(offset, length, (chunkOffset, chunkLength) =>
      super.trimRange(chunkOffset, chunkLength),
    );
  }

  protected override zeroRange(offset: number, length: number): Promise<void> {
    return this.#zeroChunks(offset, length, (chunkOffset, chunkLength) =>
      super.zeroRange(chunkOffset, chunkLength),
    );
  }

  async #zeroChunks(
    offset: number,
    length: number,
    whole: (chunkOffset: number, chunkLength: number) => Promise<void>,
  ): Promise<void> {
    checkRange(this.size, offset, length);
    await this.#eachChunk(offset, length, (chunk, chunkOffset, chunkLength, from, to) =>
      this.#writes.run(chunk, async () => {
        if (from === chunkOffset && to === chunkOffset + chunkLength) {
          await whole(chunkOffset, chunkLength);
          return;
        }
        const buffer = new Uint8Array(chunkLength);
        await this.inner.readAt(buffer, chunkOffset);
        buffer.fill(0, from - chunkOffset, to - chunkOffset);
        await this.inner.writeAt(buffer, chunkOffset);
      }),
    );
  }

  /** Runs `visit` concurrently for every chunk overlapping the request; `[from, to)` is the overlap. */
  async #eachChunk(
    offset: number,
    length: number,
    visit: (
      chunk: number,
      chunkOffset: number,
      chunkLength: number,
      from: number,
      to: number,
    ) => Promise<void>,
  ): Promise<void> {
    const [first, end] = this.layout.span(offset, length);
    const tasks: Promise<void>[] = [];
    for (let chunk = first; chunk < end; chunk++) {
      const chunkOffset = this.layout.offsetOf(chunk);
      const chunkLength = this.layout.lengthOf(chunk);
      const from = Math.max(offset, chunkOffset);
      const to = Math.min(offset + length, chunkOffset + chunkLength);
      tasks.push(visit(chunk, chunkOffset, chunkLength, from, to));
    }
    if (tasks.length === 1) return tasks[0];
    await settleAll(tasks);
  }
}

/** Like Promise.all, but waits for every task before rethrowing the first error, so no work outlives the call. */
export async function settleAll(tasks: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(tasks);
  for (const result of results) if (result.status === "rejected") throw result.reason;
}
