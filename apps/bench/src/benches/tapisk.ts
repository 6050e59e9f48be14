/**
 * `pnpm bench tapisk`: a tape as a managed block device, tapisk's design
 * against the original's, in the same run, over the same simulated tape:
 * - tapisk: reads asked for together served in tape order in one pass of the
 *   head (`HeadScheduler`), the cache's state kept in a mapped file so that a
 *   restart reuses it (`ChunkState`);
 * - the original (pojntfx/tapisk): one MTSEEK before every chunk read, MTEOM
 *   before a write that follows a read, the cache counted remote again at
 *   every start.
 * The simulated drive charges every seek 2 ms plus 2 µs per block wound, and
 * 20 µs per 4 KiB record — a real drive's seconds scaled down a
 * thousandfold, so the run stays short; the seek counts are what a real
 * drive would do.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { type Backend, ChunkState, checkRange, FileBackend, ManagedPipeline, R3mapError } from "@r3map/core";
import { mapSharedFile } from "@r3map/native";
import { SimulatedTape, type SimulatedTapeOptions, TapeBackend, TapeIndex } from "tapisk";
import { type Benchmark, type BenchResult, mibPerSecond, result } from "../harness.js";

const BLOCK = 4096;
const SIZE = 8 * 1024 * 1024;
const BLOCKS = SIZE / BLOCK;
const COSTS: Partial<SimulatedTapeOptions> = { seekMs: 2, seekMsPerBlock: 0.002, recordMs: 0.02 };
const RANDOM_READS = 512;
const QUEUE_DEPTH = 32;

/**
 * The original's tape backend's read path, ported (the workloads only
 * read): one lock; a read looks the block up and MTSEEKs before every
 * record, wherever the head is. It takes one chunk per call (the original sat behind Arbitrary(Chunked)), so a
 * run of chunks costs a seek each.
 */
class OriginalTapeBackend implements Backend {
  readonly size = SIZE;
  #queue: Promise<void> = Promise.resolve();

  constructor(
    readonly tape: SimulatedTape,
    readonly index: TapeIndex,
  ) {}

  readAt(buffer: Uint8Array, offset: number): Promise<void> {
    checkRange(this.size, offset, buffer.length);
    const reads: Promise<void>[] = [];
    for (let at = 0; at < buffer.length; at += BLOCK) {
      const part = buffer.subarray(at, at + BLOCK);
      const block = (offset + at) / BLOCK;
      reads.push(
        this.#locked(async () => {
          const position = this.index.get(block);
          if (position === undefined) return; // the original returned without zeroing; the buffers here are fresh
          await this.tape.seek(position);
          await this.tape.readRecord(part);
        }),
      );
    }
    return Promise.all(reads).then(() => {});
  }

  writeAt(): Promise<void> {
    throw new R3mapError("ERR_NOT_SUPPORTED", "the read workloads do not write");
  }

  async sync(): Promise<void> {}

  async close(): Promise<void> {}

  #locked(operation: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(operation);
    this.#queue = run.catch(() => {});
    return run;
  }
}

/** Fills a tape as a file system would over time: every block in order, then a third of them rewritten at random. */
async function prepareTape(dir: string): Promise<void> {
  const tape = SimulatedTape.open(path.join(dir, "tape.img"), { blockSize: BLOCK });
  const backend = await TapeBackend.open(tape, {
    size: SIZE,
    index: path.join(dir, "tapisk.db"),
    gatherMs: 0,
  });
  const block = new Uint8Array(BLOCK);
  for (let start = 0; start < BLOCKS; start += 256) {
    await Promise.all(
      Array.from({ length: 256 }, (_, i) =>
        backend.writeAt(block.fill((start + i) & 0xff), (start + i) * BLOCK),
      ),
    );
  }
  const random = seeded(42);
  const rewrites = Array.from({ length: Math.floor(BLOCKS / 3) }, () => Math.floor(random() * BLOCKS));
  for (const b of rewrites) await backend.writeAt(block.fill(b & 0xff), b * BLOCK);
  await backend.close();
}

interface Run {
  ms: number;
  seeks: number;
  records: number;
}

interface Design {
  name: string;
  /** Opens the remote over the prepared tape, with the bench's costs. */
  open(): Promise<{ remote: Backend; tape: SimulatedTape; close(): Promise<void> }>;
  /** The local cache and, for tapisk, the state that survives a restart. */
  cache(fresh: boolean): { local: FileBackend; state?: ChunkState };
}

function designs(dir: string): Design[] {
  const openTape = () => SimulatedTape.open(path.join(dir, "tape.img"), { blockSize: BLOCK, ...COSTS });
  const cacheFile = (name: string, fresh: boolean) => {
    const file = path.join(dir, name);
    if (fresh) fs.rmSync(file, { force: true });
    return FileBackend.open(file, { size: SIZE, create: true });
  };
  return [
    {
      name: "tapisk",
      async open() {
        const tape = openTape();
        const remote = await TapeBackend.open(tape, { size: SIZE, index: path.join(dir, "tapisk.db") });
        return { remote, tape, close: () => remote.close() };
      },
      cache(fresh) {
        const stateFile = path.join(dir, "tapisk-cache.state");
        if (fresh) fs.rmSync(stateFile, { force: true });
        const local = cacheFile("tapisk-cache.img", fresh);
        const stat = fs.fstatSync(local.fd);
        const buffer = mapSharedFile(stateFile, ChunkState.byteLength(SIZE, BLOCK), { create: true });
        const state = ChunkState.over(buffer, {
          size: SIZE,
          chunkSize: BLOCK,
          cache: `${stat.dev}:${stat.ino}`,
          boot: "bench",
        });
        return { local, state };
      },
    },
    {
      name: "original",
      async open() {
        const tape = openTape();
        const index = TapeIndex.open(
          path.join(dir, "tapisk.db"),
          { blockSize: BLOCK, size: SIZE },
          { readOnly: true },
        );
        const remote = new OriginalTapeBackend(tape, index);
        return {
          remote,
          tape,
          close: async () => {
            await index.close();
            await tape.close();
          },
        };
      },
      // The original's cache is thrown away at every start: every chunk counts as remote again.
      cache: () => ({ local: cacheFile("original-cache.img", true) }),
    },
  ];
}

/** Opens a managed pipeline for `design`, runs `workload` on it, and counts what the tape did. */
async function measure(
  design: Design,
  fresh: boolean,
  pull: boolean,
  workload: (pipeline: ManagedPipeline) => Promise<void>,
): Promise<Run> {
  const { remote, tape, close } = await design.open();
  const { local, state } = design.cache(fresh);
  const pipeline = new ManagedPipeline({
    remote,
    local,
    chunkSize: BLOCK,
    ...(state ? { presence: state.presence, written: state.written, pending: state.pending } : {}),
    // The original's defaults: one pull worker, one push worker.
    pull: pull ? { workers: 1 } : false,
    push: { workers: 1, intervalMs: null },
    closeBackends: false,
  });
  const before = { ...tape.counters };
  const started = performance.now();
  pipeline.start();
  await workload(pipeline);
  const ms = performance.now() - started;
  const run = {
    ms,
    seeks: tape.counters.seeks - before.seeks,
    records: tape.counters.recordsRead - before.recordsRead,
  };
  await pipeline.close();
  await local.close();
  state?.markClean();
  await close();
  return run;
}

async function coldSequential(design: Design): Promise<Run> {
  return measure(design, true, true, (pipeline) => pipeline.pulled());
}

async function randomReads(design: Design): Promise<Run> {
  const random = seeded(7);
  const blocks = Array.from({ length: RANDOM_READS }, () => Math.floor(random() * BLOCKS));
  return measure(design, true, false, async (pipeline) => {
    for (let i = 0; i < blocks.length; i += QUEUE_DEPTH) {
      await Promise.all(
        blocks
          .slice(i, i + QUEUE_DEPTH)
          .map((b) => pipeline.backend.readAt(new Uint8Array(BLOCK), b * BLOCK)),
      );
    }
  });
}

/** A restart after a full pull: everything is read back (as a reader of the whole device would). */
async function warmRestart(design: Design): Promise<Run> {
  await coldSequential(design);
  return measure(design, false, false, async (pipeline) => {
    for (let offset = 0; offset < SIZE; offset += 256 * BLOCK) {
      await pipeline.backend.readAt(new Uint8Array(256 * BLOCK), offset);
    }
  });
}

const benchmark: Benchmark = {
  name: "tapisk",
  description:
    "a simulated tape (seek 2 ms + 2 µs/block, 20 µs/record) as a managed device: tapisk vs the original's design, seeks counted",
  async run({ scratch, log }) {
    await prepareTape(scratch);
    const [ours, original] = designs(scratch) as [Design, Design];
    const rows: BenchResult[] = [];
    const workloads: Array<[string, (design: Design) => Promise<Run>, (run: Run) => number, string]> = [
      ["cold sequential read (pull)", coldSequential, (run) => mibPerSecond(SIZE, run.ms), "MiB/s"],
      [
        `random 4 KiB reads (${RANDOM_READS}, ${QUEUE_DEPTH} at a time)`,
        randomReads,
        (run) => RANDOM_READS / (run.ms / 1000),
        "reads/s",
      ],
      ["restart with a warm cache, read all", warmRestart, (run) => mibPerSecond(SIZE, run.ms), "MiB/s"],
    ];
    for (const [name, workload, rate, unit] of workloads) {
      const baseline = await workload(original);
      const measured = await workload(ours);
      log(
        `${name}: tapisk ${measured.seeks} seeks, ${measured.records} records, ${measured.ms.toFixed(0)} ms; ` +
          `original ${baseline.seeks} seeks, ${baseline.records} records, ${baseline.ms.toFixed(0)} ms`,
      );
      rows.push(result(`tapisk ${name}`, rate(measured), unit, `original design ${name}`, rate(baseline)));
      rows.push(
        result(
          `tapisk ${name}: seeks (lower is better)`,
          measured.seeks,
          "seeks",
          `original design ${name}: seeks`,
          baseline.seeks,
        ),
      );
    }
    return rows;
  },
};

export default benchmark;

function seeded(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}
