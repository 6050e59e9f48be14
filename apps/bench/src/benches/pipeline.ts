import { ManagedPipeline, MemoryBackend } from "@r3map/core";
import { type Benchmark, mibPerSecond, result } from "../harness.js";

const size = 256 * 1024 * 1024;

/**
 * Copies `size` bytes from `source` to `target` in `piece`-sized memcpys: the
 * ceiling for any read path. A cold read must also store every byte in fresh,
 * never-touched cache memory, whose first-touch page faults are expensive on
 * this VM (kernel.md §0), so its baseline copies into fresh memory.
 */
function memcpy(source: MemoryBackend, target: Uint8Array, piece: number): void {
  const from = source.segments[0]!;
  for (let offset = 0; offset < size; offset += piece)
    target.set(from.subarray(offset, offset + piece), offset);
}

async function readThrough(pipeline: ManagedPipeline, target: Uint8Array, piece: number): Promise<void> {
  for (let offset = 0; offset < size; offset += piece) {
    await pipeline.backend.readAt(target.subarray(offset, offset + piece), offset);
  }
}

const benchmark: Benchmark = {
  name: "pipeline",
  description:
    "managed read path (synced + arbitrary stages) over memory backends vs memcpy of the same bytes",
  async run({ log }) {
    const remote = MemoryBackend.from(new Uint8Array(size).fill(7));
    const target = new Uint8Array(size);
    const rows = [];
    for (const chunkSize of [1024 * 1024, 64 * 1024]) {
      const label = chunkSize >= 1024 * 1024 ? `${chunkSize / 1024 / 1024} MiB` : `${chunkSize / 1024} KiB`;
      const runs = 3;
      let baselineMs = Number.POSITIVE_INFINITY;
      let freshMs = Number.POSITIVE_INFINITY;
      let coldMs = Number.POSITIVE_INFINITY;
      let warmMs = Number.POSITIVE_INFINITY;
      // Interleave baseline and measured runs so machine noise hits both alike; keep the best of each.
      for (let run = 0; run < runs; run++) {
        let start = performance.now();
        memcpy(remote, target, chunkSize);
        baselineMs = Math.min(baselineMs, performance.now() - start);
        const fresh = new Uint8Array(new SharedArrayBuffer(size));
        start = performance.now();
        memcpy(remote, fresh, chunkSize);
        freshMs = Math.min(freshMs, performance.now() - start);

        const pipeline = new ManagedPipeline({
          remote,
          local: new MemoryBackend(size),
          chunkSize,
          pull: false,
          push: false,
          closeBackends: false,
        });
        pipeline.start();
        start = performance.now();
        await readThrough(pipeline, target, chunkSize);
        coldMs = Math.min(coldMs, performance.now() - start);
        start = performance.now();
        await readThrough(pipeline, target, chunkSize);
        warmMs = Math.min(warmMs, performance.now() - start);
        await pipeline.close();
      }
      const memcpyRate = mibPerSecond(size, baselineMs);
      const freshRate = mibPerSecond(size, freshMs);
      log(
        `${label}: memcpy ${memcpyRate.toFixed(0)} MiB/s (into fresh memory ${freshRate.toFixed(0)}), ` +
          `cold ${mibPerSecond(size, coldMs).toFixed(0)}, warm ${mibPerSecond(size, warmMs).toFixed(0)}`,
      );
      rows.push(
        result(
          `pipeline cold read, ${label} chunks`,
          mibPerSecond(size, coldMs),
          "MiB/s",
          `memcpy ${label} pieces into fresh memory`,
          freshRate,
        ),
        result(
          `pipeline warm read, ${label} chunks`,
          mibPerSecond(size, warmMs),
          "MiB/s",
          `memcpy ${label} pieces`,
          memcpyRate,
        ),
      );
    }
    return rows;
  },
};

export default benchmark;
