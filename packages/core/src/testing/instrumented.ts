import type { Backend } from "../backend.js";
import { R3mapError } from "../errors.js";
import { Stage } from "../stages/stage.js";
import { delay } from "../util/abort.js";
import { Gate } from "./gate.js";

/**
 * Wraps a real backend to observe and disturb it in tests: counts calls and
 * bytes, records the offsets read and written, holds calls at a gate the test
 * opens, adds latency, and makes chosen calls fail. It forwards to the wrapped
 * backend; it never invents data.
 */
export class InstrumentedBackend extends Stage {
  readonly reads: number[] = [];
  readonly writes: number[] = [];
  /** `[offset, length]` of every trim and write-zeroes that reached the wrapped backend. */
  readonly trims: [number, number][] = [];
  readonly zeroes: [number, number][] = [];
  syncs = 0;
  /**
   * Reads wait here before they reach the wrapped backend (open until the test
   * closes it): to hold a fetch in flight while a race is provoked. A held
   * call already counts as in flight.
   */
  readonly readGate = new Gate();
  /** Writes wait here, as reads at `readGate`. */
  readonly writeGate = new Gate();
  /**
   * Milliseconds added before each read or write: a slow remote for stress
   * tests and timeouts. To hold a call while something else happens, close a
   * gate instead — a delay only makes the race likely.
   */
  latencyMs = 0;
  /** The next this-many reads fail with ERR_REMOTE_FAILED. */
  failReads = 0;
  /** The next this-many writes fail with ERR_REMOTE_FAILED. */
  failWrites = 0;
  /** While true every call fails with ERR_REMOTE_UNREACHABLE (a server that went away). */
  down = false;
  #inFlight = 0;
  /** Highest number of reads and writes that were in progress at once. */
  maxInFlight = 0;

  constructor(inner: Backend) {
    super(inner);
  }

  override async readAt(buffer: Uint8Array, offset: number): Promise<void> {
    await this.#enter(this.readGate);
    try {
      if (this.failReads > 0) {
        this.failReads--;
        throw new R3mapError("ERR_REMOTE_FAILED", `injected read failure at ${offset}`);
      }
      this.reads.push(offset);
      await this.inner.readAt(buffer, offset);
    } finally {
      this.#inFlight--;
    }
  }

  override async writeAt(buffer: Uint8Array, offset: number): Promise<void> {
    await this.#enter(this.writeGate);
    try {
      if (this.failWrites > 0) {
        this.failWrites--;
        throw new R3mapError("ERR_REMOTE_FAILED", `injected write failure at ${offset}`);
      }
      this.writes.push(offset);
      await this.inner.writeAt(buffer, offset);
    } finally {
      this.#inFlight--;
    }
  }

  override async sync(): Promise<void> {
    this.#checkUp();
    this.syncs++;
    await this.inner.sync();
  }

  protected override async trimRange(offset: number, length: number): Promise<void> {
    this.#checkUp();
    this.trims.push([offset, length]);
    await super.trimRange(offset, length);
  }

  protected override async zeroRange(offset: number, length: number): Promise<void> {
    this.#checkUp();
    this.zeroes.push([offset, length]);
    await super.zeroRange(offset, length);
  }

  async #enter(gate: Gate): Promise<void> {
    this.#inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.#inFlight);
    try {
      if (this.latencyMs > 0) await delay(this.latencyMs);
      await gate.pass();
      this.#checkUp();
    } catch (error) {
      this.#inFlight--;
      throw error;
    }
  }

  #checkUp(): void {
    if (this.down) throw new R3mapError("ERR_REMOTE_UNREACHABLE", "injected outage: the remote is down");
  }
}

/**
 * `inner` with only the four calls every backend has (no optional
 * capability, no byte-range declaration): a store that offers nothing more,
 * for tests of what callers do without.
 */
export function plainBackend(inner: Backend): Backend {
  return {
    size: inner.size,
    readAt: (buffer, offset) => inner.readAt(buffer, offset),
    writeAt: (buffer, offset) => inner.writeAt(buffer, offset),
    sync: () => inner.sync(),
    close: () => inner.close(),
  };
}
