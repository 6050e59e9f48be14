import * as fs from "node:fs";
import { delay, fromSystemError, R3mapError } from "@r3map/core";
import type { Tape } from "./tape.js";

export interface SimulatedTapeOptions {
  /** Bytes per record (`mt setblk`); 0 simulates a drive left in variable-block mode. */
  blockSize: number;
  readOnly?: boolean;
  /** Milliseconds a seek that moves the head costs (default 0). Real drives take seconds to a minute. */
  seekMs?: number;
  /** Milliseconds a seek costs on top of `seekMs` per block it travels (default 0): a locate winds tape. */
  seekMsPerBlock?: number;
  /** Milliseconds each record read or written costs (default 0). */
  recordMs?: number;
  /** A file to append one line per operation to (`seek 12`, `read 12`, `write 40`, `eod 41`, `flush`). */
  log?: string;
}

/** What a simulated tape did since it was opened. */
export interface TapeCounters {
  /** Seeks that moved the head (MTSEEK and MTEOM). */
  seeks: number;
  recordsRead: number;
  recordsWritten: number;
  /** Records spaced over (MTFSR) without reading. */
  recordsSkipped: number;
  flushes: number;
  /** Milliseconds of cost charged (seeks and records). */
  costMs: number;
}

/**
 * A tape simulated by a file, following MTIO's rules: records of a fixed size
 * stored one after another (record n at byte n × blockSize), a head position
 * in blocks, an end of data after the last record written — writing anywhere
 * ends the data there, as on a real tape, and reading past the end of data is
 * an error. Seeks and records cost the configured time, and every operation
 * is counted (and logged, if asked), so tests and benchmarks can count and
 * time what a drive would do. Its I/O is synchronous, on the calling thread,
 * like the project's other local files (the engine never waits on the libuv
 * threadpool). A record torn by a crash mid-write is cut off at open: a drive
 * never shows half a record.
 */
export class SimulatedTape implements Tape {
  readonly counters: TapeCounters = {
    seeks: 0,
    recordsRead: 0,
    recordsWritten: 0,
    recordsSkipped: 0,
    flushes: 0,
    costMs: 0,
  };
  readonly readOnly: boolean;
  readonly blockSize: number;
  #position = 0;
  /** Records before the end of data. */
  #end: number;
  #fd: number;
  #log: number | undefined;
  /** Cost charged but not yet slept (sleeps happen in whole milliseconds). */
  #owedMs = 0;
  readonly #options: SimulatedTapeOptions;

  private constructor(
    readonly name: string,
    fd: number,
    options: SimulatedTapeOptions,
  ) {
    this.#fd = fd;
    this.#options = options;
    this.blockSize = options.blockSize;
    this.readOnly = options.readOnly ?? false;
    const bytes = fs.fstatSync(fd).size;
    this.#end = this.blockSize > 0 ? Math.floor(bytes / this.blockSize) : 0;
    if (!this.readOnly && this.blockSize > 0 && bytes !== this.#end * this.blockSize) {
      fs.ftruncateSync(fd, this.#end * this.blockSize);
    }
    if (options.log) this.#log = fs.openSync(options.log, "a");
  }

  /** Opens (and creates, unless read-only) the file that holds the tape. */
  static open(path: string, options: SimulatedTapeOptions): SimulatedTape {
    if (!Number.isSafeInteger(options.blockSize) || options.blockSize < 0) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `block size must be a non-negative integer, got ${options.blockSize}`,
      );
    }
    for (const [key, value] of [
      ["seekMs", options.seekMs],
      ["seekMsPerBlock", options.seekMsPerBlock],
      ["recordMs", options.recordMs],
    ] as const) {
      if (value !== undefined && !(value >= 0)) {
        throw new R3mapError("ERR_INVALID_ARGUMENT", `${key} must be a non-negative number, got ${value}`);
      }
    }
    let fd: number;
    try {
      fd = fs.openSync(path, options.readOnly ? "r" : fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    } catch (error) {
      throw fromSystemError(error, `cannot open the simulated tape ${path}`);
    }
    return new SimulatedTape(`sim:${path}`, fd, options);
  }

  /** Records before the end of data. */
  get endOfData(): number {
    return this.#end;
  }

  async tell(): Promise<number> {
    this.#assertOpen();
    return this.#position;
  }

  async seek(position: number): Promise<void> {
    this.#assertOpen();
    if (!Number.isSafeInteger(position) || position < 0 || position > this.#end) {
      throw new R3mapError(
        "ERR_IO",
        `${this.name}: cannot seek to block ${position}: the data ends at block ${this.#end} (blank check)`,
        { errno: "EIO" },
      );
    }
    await this.#move(position, "seek");
  }

  async seekEndOfData(): Promise<{ position: number; dataRecords: number }> {
    this.#assertOpen();
    await this.#move(this.#end, "eod");
    return { position: this.#end, dataRecords: this.#end };
  }

  /** Spaces forward over `count` records, each costing what reading it would (the tape streams past the head). */
  async skipRecords(count: number): Promise<void> {
    this.#assertOpen();
    if (!Number.isSafeInteger(count) || count < 0 || this.#position + count > this.#end) {
      throw new R3mapError(
        "ERR_IO",
        `${this.name}: cannot space ${count} records from block ${this.#position}: the data ends at block ${this.#end}`,
        { errno: "EIO" },
      );
    }
    if (count === 0) return;
    this.#say(`skip ${this.#position} ${count}`);
    this.#position += count;
    this.counters.recordsSkipped += count;
    await this.#spend(count * (this.#options.recordMs ?? 0));
  }

  async readRecord(record: Uint8Array): Promise<void> {
    this.#assertOpen();
    this.#checkRecord(record);
    if (this.#position >= this.#end) {
      throw new R3mapError(
        "ERR_IO",
        `${this.name}: no record at block ${this.#position}: it is the end of data (blank check)`,
        { errno: "EIO" },
      );
    }
    this.#say(`read ${this.#position}`);
    const read = fs.readSync(this.#fd, record, 0, record.length, this.#position * this.blockSize);
    if (read !== record.length)
      throw new R3mapError("ERR_IO", `${this.name}: short read of block ${this.#position}`);
    this.#position++;
    this.counters.recordsRead++;
    await this.#spend(this.#options.recordMs ?? 0);
  }

  async writeRecord(record: Uint8Array): Promise<void> {
    this.#assertOpen();
    this.#checkRecord(record);
    if (this.readOnly)
      throw new R3mapError("ERR_READ_ONLY", `${this.name} is write-protected (opened read-only)`);
    this.#say(`write ${this.#position}`);
    // Writing ends the data here: whatever followed is gone, as on a real tape.
    if (this.#position < this.#end - 1) fs.ftruncateSync(this.#fd, (this.#position + 1) * this.blockSize);
    try {
      fs.writeSync(this.#fd, record, 0, record.length, this.#position * this.blockSize);
    } catch (error) {
      throw fromSystemError(error, `${this.name}: write of block ${this.#position}`);
    }
    this.#position++;
    this.#end = this.#position;
    this.counters.recordsWritten++;
    await this.#spend(this.#options.recordMs ?? 0);
  }

  async flush(): Promise<void> {
    this.#assertOpen();
    if (this.readOnly) return;
    this.#say("flush");
    this.counters.flushes++;
    fs.fdatasyncSync(this.#fd);
  }

  async close(): Promise<void> {
    if (this.#fd < 0) return;
    fs.closeSync(this.#fd);
    this.#fd = -1;
    if (this.#log !== undefined) fs.closeSync(this.#log);
    this.#log = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #move(position: number, operation: "seek" | "eod"): Promise<void> {
    if (position === this.#position) return;
    this.#say(`${operation} ${position}`);
    const distance = Math.abs(position - this.#position);
    this.#position = position;
    this.counters.seeks++;
    await this.#spend((this.#options.seekMs ?? 0) + distance * (this.#options.seekMsPerBlock ?? 0));
  }

  #checkRecord(record: Uint8Array): void {
    if (this.blockSize === 0 || record.length !== this.blockSize) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `${this.name}: records are ${this.blockSize} bytes, got a buffer of ${record.length}`,
      );
    }
  }

  /** Charges `ms`, sleeping once a whole millisecond is owed (timers are no finer). */
  async #spend(ms: number): Promise<void> {
    if (ms <= 0) return;
    this.counters.costMs += ms;
    this.#owedMs += ms;
    if (this.#owedMs < 1) return;
    const started = performance.now();
    await delay(Math.floor(this.#owedMs));
    this.#owedMs -= performance.now() - started;
  }

  #say(line: string): void {
    if (this.#log !== undefined) fs.writeSync(this.#log, `${line}\n`);
  }

  #assertOpen(): void {
    if (this.#fd < 0) throw new R3mapError("ERR_CLOSED", `${this.name} is closed`);
  }
}
