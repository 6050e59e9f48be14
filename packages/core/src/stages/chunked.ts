import type { Backend } from "../backend.js";
import { ChunkLayout } from "../chunk-layout.js";
import { R3mapError } from "../errors.js";
import { Stage } from "./stage.js";

/**
 * Lets only whole, aligned chunks through: offset a multiple of the chunk size,
 * length exactly that chunk's length (the last chunk may be shorter). Protects
 * chunk-keyed backends (directory, key-value stores) from malformed requests.
 */
export class ChunkedStage extends Stage {
  readonly layout: ChunkLayout;

  /** Only whole chunks pass. */
  override get byteRanges(): boolean {
    return false;
  }

  constructor(inner: Backend, chunkSize: number) {
    super(inner);
    this.layout = new ChunkLayout(inner.size, chunkSize);
  }

  override async readAt(buffer: Uint8Array, offset: number): Promise<void> {
    this.check(offset, buffer.length);
    await this.inner.readAt(buffer, offset);
  }

  override async writeAt(buffer: Uint8Array, offset: number): Promise<void> {
    this.check(offset, buffer.length);
    await this.inner.writeAt(buffer, offset);
  }

  protected override async trimRange(offset: number, length: number): Promise<void> {
    this.checkSpan(offset, length);
    await super.trimRange(offset, length);
  }

  protected override async zeroRange(offset: number, length: number): Promise<void> {
    this.checkSpan(offset, length);
    await super.zeroRange(offset, length);
  }

  /**
   * Throws unless `[offset, offset+length)` is one or more whole chunks (for
   * trim and write-zeroes, which carry no buffer); returns `[first, end)`.
   */
  checkSpan(offset: number, length: number): [first: number, end: number] {
    const first = this.check(offset, this.layout.lengthOf(this.layout.indexOf(offset)));
    const end = offset + length;
    if (!Number.isSafeInteger(length) || length <= 0 || end > this.layout.size) {
      throw new R3mapError(
        "ERR_OUT_OF_RANGE",
        `range [${offset}, ${end}) is empty or reaches past the end of the resource (${this.layout.size} bytes)`,
      );
    }
    if (end % this.layout.chunkSize !== 0 && end !== this.layout.size) {
      throw new R3mapError("ERR_MISALIGNED", `range end ${end} is not a chunk boundary`);
    }
    return [first, this.layout.span(offset, length)[1]];
  }

  /** Throws unless `[offset, offset+length)` is exactly one chunk; returns its index. */
  check(offset: number, length: number): number {
    const { chunkSize, size } = this.layout;
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new R3mapError("ERR_INVALID_ARGUMENT", `offset must be a non-negative integer, got ${offset}`);
    }
    if (offset >= size) {
      throw new R3mapError(
        "ERR_OUT_OF_RANGE",
        `offset ${offset} is past the end of the resource (${size} bytes)`,
      );
    }
    if (offset % chunkSize !== 0) {
      throw new R3mapError(
        "ERR_MISALIGNED",
        `offset ${offset} is not a multiple of the chunk size ${chunkSize}`,
      );
    }
    const chunk = offset / chunkSize;
    const expected = this.layout.lengthOf(chunk);
    if (length !== expected) {
      throw new R3mapError(
        length > expected && offset + length > size ? "ERR_OUT_OF_RANGE" : "ERR_MISALIGNED",
        `chunk ${chunk} is ${expected} bytes long, the request has ${length}`,
      );
    }
    return chunk;
  }
}
