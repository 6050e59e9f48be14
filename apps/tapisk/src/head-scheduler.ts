import { deferred } from "@r3map/core";
import type { Tape } from "./tape.js";

interface ReadRequest {
  /** Where the record is, asked when its pass starts; undefined: nowhere (it reads as zeros). */
  locate: () => number | undefined;
  position: number;
  record: Uint8Array;
  done: (error?: unknown) => void;
}

interface WriteRequest {
  record: Uint8Array;
  /** Called with the position the record landed at, before the next operation starts. */
  landed: (position: number) => void;
  done: (error?: unknown) => void;
}

interface Barrier {
  run: () => Promise<void>;
  done: (error?: unknown) => void;
}

export interface HeadSchedulerOptions {
  /**
   * Milliseconds an idle head waits after the first request for others to
   * serve in the same pass (default 2; 0: only those of the same event-loop
   * turn). A seek costs seconds, so a short wait that lets concurrent reads
   * be sorted pays for itself many times over.
   */
  gatherMs?: number;
  /**
   * A read at most this many records ahead of the head spaces forward to it
   * (MTFSR) instead of seeking (default 64): the drive keeps streaming, where
   * a locate stops it and repositions.
   */
  skipWithin?: number;
}

/** What the head did: seeks this scheduler asked for (reads, and moves to the end of data). */
export interface HeadCounters {
  seeks: number;
  /** Records spaced over on the way to a read a little ahead. */
  recordsSkipped: number;
  passes: number;
  recordsRead: number;
  recordsWritten: number;
}

/**
 * The one head of a tape, shared by every request. Requests that arrive
 * while the head is busy (or within `gatherMs` of the first) are served
 * together in a pass:
 * 1. writes, in arrival order, appended at the end of data (one MTEOM when
 *    the head is elsewhere, then one MTIOCPOS; each record lands on the next
 *    block);
 * 2. barriers (a flush of the tape and a commit of the index), after the writes
 *    that came before them;
 * 3. reads, sorted by tape position, in one sweep of the head: a read of the
 *    block right after the previous one needs no seek, and reads that arrive
 *    during the sweep for a position still ahead of the head join it.
 * A read of a block the head is already on never seeks, and one a few
 * records ahead spaces forward to it (`skipWithin`).
 */
export class HeadScheduler {
  readonly counters: HeadCounters = {
    seeks: 0,
    recordsSkipped: 0,
    passes: 0,
    recordsRead: 0,
    recordsWritten: 0,
  };
  #reads: ReadRequest[] = [];
  #writes: WriteRequest[] = [];
  #barriers: Barrier[] = [];
  #running: Promise<void> | undefined;
  /** The head's block, when known (unknown at start and after a failure). */
  #head: number | undefined;
  /** The end of data, when known: a write with the head there needs no MTEOM. */
  #end: number | undefined;
  readonly #gatherMs: number;
  readonly #skipWithin: number;

  /** `at`: where the head and the end of data are now, if the caller knows (it just asked the drive). */
  constructor(
    readonly tape: Tape,
    options: HeadSchedulerOptions = {},
    at?: { head: number; end: number },
  ) {
    this.#gatherMs = options.gatherMs ?? 2;
    this.#skipWithin = options.skipWithin ?? 64;
    this.#head = at?.head;
    this.#end = at?.end;
  }

  /**
   * Reads the record at the position `locate` gives when the read's pass
   * starts — after the writes queued before it — into `record` (zeros when
   * it gives none).
   */
  read(locate: () => number | undefined, record: Uint8Array): Promise<void> {
    const { promise, resolve, reject } = deferred();
    this.#reads.push({ locate, position: -1, record, done: (error) => (error ? reject(error) : resolve()) });
    this.#kick();
    return promise;
  }

  /** Appends `record` at the end of data; `landed` hears the position first. */
  write(record: Uint8Array, landed: (position: number) => void): Promise<void> {
    const { promise, resolve, reject } = deferred();
    this.#writes.push({ record, landed, done: (error) => (error ? reject(error) : resolve()) });
    this.#kick();
    return promise;
  }

  /** Runs `run` with the head to itself, after every write queued before this call. */
  exclusive(run: () => Promise<void>): Promise<void> {
    const { promise, resolve, reject } = deferred();
    this.#barriers.push({ run, done: (error) => (error ? reject(error) : resolve()) });
    this.#kick();
    return promise;
  }

  /** Resolves once nothing is queued or running. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  #kick(): void {
    this.#running ??= this.#serve().finally(() => {
      this.#running = undefined;
      if (this.#reads.length + this.#writes.length + this.#barriers.length > 0) this.#kick();
    });
  }

  async #serve(): Promise<void> {
    // Only reads gain from waiting for company (writes all go to the end of data anyway).
    await (this.#gatherMs > 0 && this.#reads.length > 0
      ? new Promise((resolve) => setTimeout(resolve, this.#gatherMs))
      : new Promise((resolve) => setImmediate(resolve)));
    while (this.#reads.length + this.#writes.length + this.#barriers.length > 0) {
      this.counters.passes++;
      const writes = this.#writes.splice(0);
      const barriers = this.#barriers.splice(0);
      await this.#serveWrites(writes);
      for (const barrier of barriers) await settle(barrier.run(), barrier.done);
      await this.#sweep();
    }
  }

  async #serveWrites(writes: WriteRequest[]): Promise<void> {
    if (writes.length === 0) return;
    let position: number;
    try {
      if (this.#head === undefined || this.#head !== this.#end) {
        this.#lost();
        await this.tape.seekEndOfData();
        this.counters.seeks++;
      }
      // MTIOCPOS: the position the next record gets (the drive's word, not our count).
      position = await this.tape.tell();
      this.#head = position;
      this.#end = position;
    } catch (error) {
      this.#lost();
      for (const write of writes) write.done(error);
      return;
    }
    for (const write of writes) {
      try {
        await this.tape.writeRecord(write.record);
        this.counters.recordsWritten++;
        this.#head = this.#end = ++position;
        write.landed(position - 1);
        write.done();
      } catch (error) {
        // Where the head and the end of data are after a failed write is the drive's secret: ask again next time.
        this.#lost();
        this.#end = undefined;
        write.done(error);
        for (const rest of writes.slice(writes.indexOf(write) + 1)) rest.done(error);
        return;
      }
    }
  }

  /** Serves the queued reads in position order, taking in later ones still ahead of the head. */
  async #sweep(): Promise<void> {
    const pending = located(this.#reads.splice(0)).sort(byPosition);
    const behind: ReadRequest[] = [];
    while (pending.length > 0) {
      const read = pending.shift()!;
      await this.#serveRead(read);
      if (this.#reads.length > 0 && this.#writes.length === 0) {
        const head = this.#head ?? Number.POSITIVE_INFINITY;
        for (const late of located(this.#reads.splice(0)))
          (late.position >= head ? pending : behind).push(late);
        pending.sort(byPosition);
      }
    }
    // Positions the head had passed wait for the next pass, with writes and barriers first.
    this.#reads.unshift(...behind);
  }

  async #serveRead(read: ReadRequest): Promise<void> {
    try {
      const ahead = this.#head === undefined ? -1 : read.position - this.#head;
      if (ahead > 0 && ahead <= this.#skipWithin) {
        this.#head = undefined;
        await this.tape.skipRecords(ahead);
        this.counters.recordsSkipped += ahead;
      } else if (ahead !== 0) {
        this.#head = undefined;
        await this.tape.seek(read.position);
        this.counters.seeks++;
      }
      await this.tape.readRecord(read.record);
      this.counters.recordsRead++;
      this.#head = read.position + 1;
      read.done();
    } catch (error) {
      this.#lost();
      read.done(error);
    }
  }

  #lost(): void {
    this.#head = undefined;
  }
}

/** Gives each read its position now; reads of records that are nowhere get zeros at once. */
function located(reads: ReadRequest[]): ReadRequest[] {
  const out: ReadRequest[] = [];
  for (const read of reads) {
    const position = read.locate();
    if (position === undefined) {
      read.record.fill(0);
      read.done();
    } else {
      read.position = position;
      out.push(read);
    }
  }
  return out;
}

function byPosition(a: ReadRequest, b: ReadRequest): number {
  return a.position - b.position;
}

async function settle(work: Promise<void>, done: (error?: unknown) => void): Promise<void> {
  try {
    await work;
    done();
  } catch (error) {
    done(error);
  }
}
