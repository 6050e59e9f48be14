/**
 * userfaultfd regions on the real kernel: the faulting thread (a worker, the
 * main thread, or another process) gets exactly the bytes JavaScript
 * supplies; present chunks never reach JavaScript; failed misses give SIGBUS.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { ChunkBitmap, MemoryBackend } from "@r3map/core";
import { waitFor } from "@r3map/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { touchOnThread } from "../src/thread-read.js";
import { nativeAddonPath } from "../src/uffd-native.js";
import { UffdRegion } from "../src/uffd-region.js";

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures");
const { fillPattern, countMismatches } = createRequire(import.meta.url)("./fixtures/uffd-pattern.cjs") as {
  fillPattern(bytes: Uint8Array, base: number): void;
  countMismatches(bytes: Uint8Array, base: number): number;
};

const MiB = 1024 * 1024;
const features = UffdRegion.features();
const skipReason = features.available
  ? undefined
  : `userfaultfd unavailable (${features.errno}): run as root`;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function track<T extends { close(): void }>(resource: T): T {
  cleanups.push(() => resource.close());
  return resource;
}

/** A cache (memory backend + presence bitmap) and an onMiss that fills it with the pattern, like a fetch. */
function patternEngine(size: number, chunkSize: number) {
  const memory = new MemoryBackend(size);
  const presence = new ChunkBitmap(Math.ceil(size / chunkSize));
  const calls: number[] = [];
  const supply = (chunk: number): void => {
    const segment = memory.segments[0] as Uint8Array;
    const start = chunk * chunkSize;
    fillPattern(segment.subarray(start, Math.min(size, start + chunkSize)), start);
    presence.set(chunk);
  };
  const onMiss = async (chunk: number): Promise<void> => {
    calls.push(chunk);
    // Answers on a later turn of the event loop, as an engine awaiting the network does (not a wait).
    await new Promise<void>((resolve) => setImmediate(resolve));
    supply(chunk);
  };
  return { memory, presence, calls, supply, onMiss };
}

/** A region served from a `patternEngine`'s cache, its misses answered by `onMiss` (the engine's by default). */
function patternRegion(
  engine: ReturnType<typeof patternEngine>,
  size: number,
  chunkSize: number,
  onMiss: (chunk: number) => Promise<void> = engine.onMiss,
): UffdRegion {
  return track(
    UffdRegion.create({
      size,
      chunkSize,
      presence: engine.presence,
      cache: { segments: engine.memory.segments },
      onMiss,
    }),
  );
}

/**
 * A memfd region whose memfd is its cache (MINOR faults + UFFDIO_CONTINUE), as
 * a slice's: `supply(chunk)` stores the pattern and sets the presence bit, as
 * a fetch would, and onMiss does the same for the chunks it is asked for.
 */
function memfdCacheRegion(size: number, chunkSize: number, dirtyTracking = false) {
  const chunks = size / chunkSize;
  const presence = new ChunkBitmap(chunks);
  const calls: number[] = [];
  const supply = (chunk: number): void => {
    const bytes = new Uint8Array(chunkSize);
    fillPattern(bytes, chunk * chunkSize);
    region.store(chunk, bytes);
    presence.set(chunk);
  };
  const region: UffdRegion = track(
    UffdRegion.create({
      size,
      chunkSize,
      memory: "memfd",
      cacheInMemfd: true,
      presence,
      dirtyTracking,
      onMiss: async (chunk) => {
        calls.push(chunk);
        supply(chunk);
      },
    }),
  );
  return { region, chunks, calls, supply };
}

/** Runs the worker fixture and resolves with its first message. */
function runWorker<T>(workerData: Record<string, unknown>): { worker: Worker; first: Promise<T> } {
  const worker = new Worker(path.join(fixtures, "uffd-worker.cjs"), {
    workerData: { ...workerData, addonPath: nativeAddonPath() },
  });
  cleanups.push(() => worker.terminate());
  const first = new Promise<T>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`worker exited with ${code} before answering`)));
  });
  return { worker, first };
}

describe.skipIf(skipReason !== undefined)("UffdRegion", () => {
  it("a worker touching every byte of 256 MiB gets what onMiss (main thread) supplies", async () => {
    const size = 256 * MiB;
    const chunkSize = 64 * 1024;
    const engine = patternEngine(size, chunkSize);
    const region = patternRegion(engine, size, chunkSize);
    const { first } = runWorker<{ mismatches: number; length: number }>({ role: "touch", id: region.id });
    const answer = await first;
    expect(answer).toMatchObject({ mismatches: 0, length: size });
    const stats = region.stats();
    expect(stats.misses).toBe(size / chunkSize);
    expect(new Set(engine.calls).size).toBe(size / chunkSize); // each chunk asked for once
    expect(stats.resolvedNatively).toBe(0);
    expect(stats.failed).toBe(0);
  });

  it("the main thread touching every byte gets what onMiss on a worker supplies", async () => {
    const size = 256 * MiB;
    const chunkSize = MiB;
    const { worker, first } = runWorker<{ id: number }>({ role: "serve", size, chunkSize });
    const { id } = await first;
    const view = UffdRegion.attach(id);
    // Blocks this thread in page faults while the worker's event loop serves them.
    expect(countMismatches(view, 0)).toBe(0);
    const stats = new Promise<{ stats: { misses: number } }>((resolve) => worker.once("message", resolve));
    worker.postMessage("close");
    expect((await stats).stats.misses).toBe(size / chunkSize);
  });

  it("a thread blocked on a miss wakes (to zeros) when the serving worker exits, instead of hanging", async () => {
    const size = 4 * MiB;
    const { worker, first } = runWorker<{ id: number }>({
      role: "serve-then-exit",
      size,
      chunkSize: 64 * 1024,
    });
    const exited = new Promise((resolve) => worker.once("exit", resolve));
    const view = UffdRegion.attach((await first).id);
    expect(view[100]).toBe(0); // blocks until the worker's teardown unregisters the region
    expect(view.every((byte) => byte === 0)).toBe(true);
    await exited;
  });

  it("many misses are outstanding at once, and faults on one chunk reach onMiss once", async () => {
    const size = 8 * MiB;
    const chunkSize = MiB;
    const engine = patternEngine(size, chunkSize);
    // onMiss holds every answer until four different chunks are waiting: a
    // handler that waited for each miss before reading the next fault would never get there.
    const held: Array<() => void> = [];
    const region = track(
      UffdRegion.create({
        size,
        chunkSize,
        presence: engine.presence,
        cache: { segments: engine.memory.segments },
        onMiss: async (chunk) => {
          engine.calls.push(chunk);
          await new Promise<void>((resolve) => {
            held.push(resolve);
            if (held.length === 4) for (const release of held.splice(0)) release();
          });
          engine.supply(chunk);
        },
      }),
    );
    // Workers 0–3 touch chunks 0–3; workers 4–7 touch the same chunks again, at other pages.
    const workers = [...Array(8).keys()].map((i) => {
      const chunk = i % 4;
      const offset = chunk * chunkSize + (i < 4 ? 0 : chunkSize / 2);
      return runWorker<{ mismatches: number }>({
        role: "touch",
        id: region.id,
        offset,
        length: chunkSize / 2,
      }).first;
    });
    for (const answer of await Promise.all(workers)) expect(answer.mismatches).toBe(0);
    expect([...engine.calls].sort()).toEqual([0, 1, 2, 3]);
    expect(region.stats().misses).toBe(4);
  });

  it("a region nobody references stays open until close() (garbage collection does not end it)", async () => {
    const size = 4 * MiB;
    const { worker, first } = runWorker<{ id: number }>({
      role: "serve-dropped",
      size,
      chunkSize: 64 * 1024,
    });
    const view = UffdRegion.attach((await first).id);
    expect(countMismatches(view, 0)).toBe(0);
    worker.postMessage("exit");
  });

  it("present chunks are resolved natively and never reach JavaScript", async () => {
    const size = 64 * MiB;
    const chunkSize = 64 * 1024;
    const chunks = size / chunkSize;
    const engine = patternEngine(size, chunkSize);
    for (let chunk = 0; chunk < chunks; chunk += 3) engine.supply(chunk); // a third present up front
    const region = patternRegion(engine, size, chunkSize);
    const { first } = runWorker<{ mismatches: number }>({ role: "touch", id: region.id });
    expect((await first).mismatches).toBe(0);
    const expectedMisses = [...Array(chunks).keys()].filter((chunk) => chunk % 3 !== 0);
    expect([...engine.calls].sort((a, b) => a - b)).toEqual(expectedMisses);
    const stats = region.stats();
    expect(stats.misses).toBe(expectedMisses.length);
    expect(stats.resolvedNatively).toBe(chunks - expectedMisses.length);
  });

  it("touchOnThread faults a page on a native thread while this thread answers; a failed miss rejects with EFAULT", async () => {
    const size = 4 * MiB;
    const chunkSize = 64 * 1024;
    const engine = patternEngine(size, chunkSize);
    let failing = false;
    const region = patternRegion(engine, size, chunkSize, async (chunk) => {
      if (failing) throw new Error("backend unreachable");
      await engine.onMiss(chunk);
    });
    await touchOnThread(region.buffer, 5 * chunkSize + 17);
    expect(engine.calls).toEqual([5]);
    expect(countMismatches(region.buffer.subarray(5 * chunkSize, 6 * chunkSize), 5 * chunkSize)).toBe(0);
    failing = true;
    await expect(touchOnThread(region.buffer, 9 * chunkSize)).rejects.toMatchObject({ errno: "EFAULT" });
    expect(region.stats().failed).toBe(1);
    await expect(touchOnThread(region.buffer, size)).rejects.toMatchObject({ code: "ERR_OUT_OF_RANGE" });
  });

  it("the handler thread runs at a raised priority (a blocked reader waits on it)", async () => {
    const niceOfThreads = () =>
      fs.readdirSync("/proc/self/task").map((tid) => {
        const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
        return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
      });
    const before = niceOfThreads().filter((nice) => nice === -10).length;
    const region = track(UffdRegion.create({ size: MiB, chunkSize: 65536, onMiss: () => {} }));
    // The thread raises its own priority once it runs.
    await waitFor(() => niceOfThreads().filter((nice) => nice === -10).length > before, {
      timeoutMs: 2000,
      message: "the handler thread to raise its priority",
    });
    expect(niceOfThreads().filter((nice) => nice === -10).length).toBe(before + 1);
    region.close();
  });

  it("all present: a region served without onMiss at all", async () => {
    const size = 16 * MiB;
    const chunkSize = 256 * 1024;
    const engine = patternEngine(size, chunkSize);
    for (let chunk = 0; chunk < size / chunkSize; chunk++) engine.supply(chunk);
    const region = track(
      UffdRegion.create({
        size,
        chunkSize,
        presence: engine.presence,
        cache: { segments: engine.memory.segments },
      }),
    );
    // No JavaScript is involved, so even this thread may touch it.
    expect(countMismatches(region.buffer, 0)).toBe(0);
    expect(region.stats()).toMatchObject({ misses: 0, resolvedNatively: size / chunkSize });
  });

  it("fill and fillFrom map chunks ahead of the first touch (EEXIST is fine)", async () => {
    const size = 8 * MiB;
    const chunkSize = 64 * 1024;
    const engine = patternEngine(size, chunkSize);
    for (let chunk = 0; chunk < size / chunkSize / 2; chunk++) engine.supply(chunk);
    const region = patternRegion(engine, size, chunkSize);
    const half = size / chunkSize / 2;
    for (let chunk = 0; chunk < half; chunk++) expect(region.fill(chunk)).toBe(true);
    expect(region.fill(0)).toBe(false);
    const bytes = new Uint8Array(chunkSize);
    for (let chunk = half; chunk < half * 2; chunk++) {
      fillPattern(bytes, chunk * chunkSize);
      expect(region.fillFrom(chunk, bytes)).toBe(true);
    }
    expect(region.fillFrom(half, bytes)).toBe(false);
    const { first } = runWorker<{ mismatches: number }>({ role: "touch", id: region.id });
    expect((await first).mismatches).toBe(0);
    expect(region.stats()).toMatchObject({ faults: 0, misses: 0, filled: half * 2 });
  });

  it("a file cache (fd + offset) is read with pread; a short file reads as zeros past its end", async () => {
    const size = 16 * MiB;
    const chunkSize = 256 * 1024;
    const header = 4096;
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), "r3map-uffd-"));
    cleanups.push(() => fs.rmSync(directory, { recursive: true, force: true }));
    const file = path.join(directory, "cache.img");
    const contents = new Uint8Array(header + size - chunkSize); // the last chunk is missing from the file
    fillPattern(contents.subarray(header), 0);
    fs.writeFileSync(file, contents);
    const fd = fs.openSync(file, "r");
    cleanups.push(() => fs.closeSync(fd));
    const region = track(
      UffdRegion.create({ size, chunkSize, memory: "memfd", cache: { fd, offset: header } }),
    );
    const { first } = runWorker<{ mismatches: number }>({ role: "touch", id: region.id });
    // Everything matches except the last chunk, which reads as zeros.
    const expectedZeros = countMismatches(new Uint8Array(chunkSize), size - chunkSize);
    expect((await first).mismatches).toBe(expectedZeros);
    expect(region.stats()).toMatchObject({ misses: 0, resolvedNatively: size / chunkSize });
  });

  for (const [memory, dirtyTracking] of [
    ["anonymous", false],
    ["memfd", false],
    ["anonymous", true],
    ["memfd", true],
  ] as const) {
    it(`evict() makes the next touch fetch the chunk again (${memory}, dirty tracking ${dirtyTracking})`, async () => {
      const size = 4 * MiB;
      const chunkSize = 64 * 1024;
      const engine = patternEngine(size, chunkSize);
      const region = track(
        UffdRegion.create({
          size,
          chunkSize,
          memory,
          dirtyTracking,
          presence: engine.presence,
          cache: { segments: engine.memory.segments },
          onMiss: engine.onMiss,
        }),
      );
      const first = runWorker<{ mismatches: number }>({ role: "touch", id: region.id }).first;
      expect((await first).mismatches).toBe(0);
      // Chunk 5 changes remotely: drop it locally, and the next touch asks onMiss again.
      engine.presence.clear(5);
      (engine.memory.segments[0] as Uint8Array).fill(0, 5 * chunkSize, 6 * chunkSize);
      region.evict(5);
      const second = runWorker<{ mismatches: number }>({ role: "touch", id: region.id }).first;
      expect((await second).mismatches).toBe(0);
      expect(engine.calls.filter((chunk) => chunk === 5)).toHaveLength(2);
      expect(region.stats().misses).toBe(size / chunkSize + 1);
      if (dirtyTracking) expect(region.scanDirty()).toEqual([]); // fetching again is not writing
    });
  }

  it("a page dropped behind the handler's back (hole punched in the memfd) is mapped again, not looped on", async () => {
    const size = 4 * MiB;
    const chunkSize = 256 * 1024;
    const engine = patternEngine(size, chunkSize);
    for (let chunk = 0; chunk < size / chunkSize; chunk++) engine.supply(chunk);
    const region = track(
      UffdRegion.create({
        size,
        chunkSize,
        memory: "memfd",
        presence: engine.presence,
        cache: { segments: engine.memory.segments },
      }),
    );
    expect((await runWorker<{ mismatches: number }>({ role: "touch", id: region.id }).first).mismatches).toBe(
      0,
    );
    const faultsBefore = region.stats().faults;
    execFileSync("fallocate", [
      "--punch-hole",
      "--offset",
      String(chunkSize + 8192),
      "--length",
      "8192",
      `/proc/${process.pid}/fd/${region.memfd}`,
    ]);
    const again = runWorker<{ mismatches: number }>({ role: "touch", id: region.id }).first;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        region.close(); // unregistering frees a looping thread
        reject(new Error("the touching thread did not finish: the fault was not resolved"));
      }, 20_000);
    });
    try {
      expect((await Promise.race([again, deadline])).mismatches).toBe(0);
      expect(region.stats().faults).toBeGreaterThan(faultsBefore); // the punched pages did fault
    } finally {
      clearTimeout(timer);
    }
  });

  it("a memfd region with the memfd as cache (MINOR + CONTINUE) is shared with another mapping", async () => {
    const chunkSize = 128 * 1024;
    const { region, chunks, calls, supply } = memfdCacheRegion(16 * MiB, chunkSize);
    for (let chunk = 0; chunk < chunks; chunk += 2) supply(chunk);
    const { first } = runWorker<{ mismatches: number }>({ role: "touch", id: region.id });
    expect((await first).mismatches).toBe(0);
    expect(calls.length).toBe(chunks / 2);
    expect(region.stats().resolvedNatively).toBe(chunks / 2);
    expect(region.memfd).toBeGreaterThan(0);
  });

  it.each([false, true])(
    "mapPresent maps present chunks ahead of any touch, consecutive ones together (memfd cache, dirty tracking %s)",
    async (dirtyTracking) => {
      const { region, chunks, calls, supply } = memfdCacheRegion(16 * MiB, 4096, dirtyTracking);
      // Present: all but every 100th chunk (as a pull that a few misses overtook… or not yet reached).
      for (let chunk = 0; chunk < chunks; chunk++) if (chunk % 100 !== 99) supply(chunk);
      const missing = Math.floor(chunks / 100);
      expect(region.mapPresent(0, chunks)).toBe(chunks - missing);
      expect(region.mapPresent(0, chunks)).toBe(0); // mapped already
      const { first } = runWorker<{ mismatches: number }>({ role: "touch", id: region.id });
      expect((await first).mismatches).toBe(0);
      // Only the chunks that were not present faulted, and each reached onMiss.
      expect(region.stats()).toMatchObject({ faults: missing, misses: missing, resolvedNatively: 0 });
      expect(calls.length).toBe(missing);
      if (dirtyTracking) expect(region.scanDirtyChunks()).toEqual([]); // mapping is not writing
      expect(() => region.mapPresent(chunks, 1)).toThrow();
    },
  );

  it("a child process touching every byte gets what onMiss in this process supplies", async () => {
    const size = 256 * MiB;
    const chunkSize = MiB;
    const engine = patternEngine(size, chunkSize);
    for (let chunk = 0; chunk < size / chunkSize; chunk += 2) engine.supply(chunk);
    const child = startChild(size, chunkSize);
    const remote = JSON.parse(await child.line()) as Parameters<typeof UffdRegion.adopt>[0]["remote"];
    const region = track(
      UffdRegion.adopt({
        remote,
        presence: engine.presence,
        cache: { segments: engine.memory.segments },
        onMiss: engine.onMiss,
      }),
    );
    child.process.stdin?.write("go\n");
    expect(JSON.parse(await child.line())).toEqual({ mismatches: 0 });
    expect(await child.exit).toEqual({ code: 0, signal: null });
    expect(region.stats()).toMatchObject({
      misses: size / chunkSize / 2,
      resolvedNatively: size / chunkSize / 2,
    });
  });

  for (const failure of ["throws", "rejects"] as const) {
    it(`an onMiss that ${failure} gives the faulting process SIGBUS, not a hang`, async () => {
      const size = 4 * MiB;
      const chunkSize = 64 * 1024;
      const child = startChild(size, chunkSize);
      const remote = JSON.parse(await child.line()) as Parameters<typeof UffdRegion.adopt>[0]["remote"];
      const region = track(
        UffdRegion.adopt({
          remote,
          onMiss:
            failure === "throws"
              ? () => {
                  throw new Error("backend unreachable");
                }
              : async () => {
                  throw new Error("backend unreachable");
                },
        }),
      );
      child.process.stdin?.write("go\n");
      expect(await child.exit).toEqual({ code: null, signal: "SIGBUS" });
      expect(region.stats().failed).toBe(1);
      expect((region.lastMissError as Error).message).toBe("backend unreachable");
    });
  }

  const failingKinds = [
    { memfd: false, continue: false, dirty: true },
    { memfd: true, continue: false, dirty: true },
    { memfd: true, continue: true, dirty: true },
    { memfd: true, continue: true, dirty: false },
  ];
  it.each(failingKinds)("a failed miss gives SIGBUS in every kind of region: %o", async (kind) => {
    // Write-protect markers (dirty tracking) used to make UFFDIO_POISON fail: the thread then looped on its fault.
    const child = startChild(4 * MiB, 64 * 1024, { mode: "self-failing", ...kind });
    const timer = setTimeout(() => child.process.kill("SIGKILL"), 20_000);
    try {
      expect(await child.exit).toEqual({ code: null, signal: "SIGBUS" });
    } finally {
      clearTimeout(timer);
    }
  });

  it("close() detaches the views and wakes nothing into a crash", () => {
    const size = 4 * MiB;
    const engine = patternEngine(size, 64 * 1024);
    const region = UffdRegion.create({
      size,
      chunkSize: 64 * 1024,
      cache: { segments: engine.memory.segments },
    });
    const view = region.buffer;
    expect(view.length).toBe(size);
    region.close();
    region.close();
    expect(view.length).toBe(0);
    expect(() => view.readUInt8(0)).toThrow(RangeError);
    expect(() => region.buffer).toThrow(expect.objectContaining({ code: "ERR_CLOSED" }));
    expect(() => region.fill(0)).toThrow(expect.objectContaining({ code: "ERR_CLOSED" }));
  });

  it("views of parts: region.view(offset, length) and attach(id, offset, length)", async () => {
    const size = 8 * MiB;
    const chunkSize = 64 * 1024;
    const engine = patternEngine(size, chunkSize);
    for (let chunk = 0; chunk < size / chunkSize; chunk++) engine.supply(chunk);
    const region = track(
      UffdRegion.create({
        size,
        chunkSize,
        presence: engine.presence,
        cache: { segments: engine.memory.segments },
      }),
    );
    const part = region.view(3 * MiB, MiB);
    expect(part.length).toBe(MiB);
    expect(countMismatches(part, 3 * MiB)).toBe(0);
    const attached = UffdRegion.attach(region.id, 5 * MiB, 4096);
    expect(countMismatches(attached, 5 * MiB)).toBe(0);
    expect(() => region.view(7 * MiB, 2 * MiB)).toThrow(
      expect.objectContaining({ code: "ERR_OUT_OF_RANGE" }),
    );
    region.close();
    expect(part.length).toBe(0);
  });

  it("reports its capabilities; an unref()'d region does not keep its thread alive", async () => {
    expect(UffdRegion.capabilities()).toEqual({
      available: true,
      memfd: true,
      cacheInMemfd: true,
      failedMissesSigbus: true,
      dirtyTracking: true,
    });
    const { worker, first } = runWorker<{ id: number }>({
      role: "serve-unref",
      size: MiB,
      chunkSize: 64 * 1024,
    });
    await first;
    expect(await new Promise((resolve) => worker.once("exit", resolve))).toBe(0);
  });

  it("rejects bad geometry with ERR_INVALID_ARGUMENT", () => {
    expect(() => UffdRegion.create({ size: 1000, chunkSize: 4096, onMiss: () => {} })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }),
    );
    expect(() => UffdRegion.create({ size: 8192, chunkSize: 4096 })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }),
    );
  });

  it("an aborted signal closes the region", () => {
    const controller = new AbortController();
    const region = UffdRegion.create({
      size: 1 * MiB,
      chunkSize: 64 * 1024,
      onMiss: () => {},
      signal: controller.signal,
    });
    controller.abort();
    expect(region.closed).toBe(true);
  });
});

describe.skipIf(process.getuid?.() !== 0)("UffdRegion privileges", () => {
  it("an unprivileged process gets ERR_PERMISSION with advice", async () => {
    // A copy the unprivileged user can read, wherever the checkout lives.
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), "r3map-uffd-nobody-"));
    cleanups.push(() => fs.rmSync(directory, { recursive: true, force: true }));
    fs.chmodSync(directory, 0o755);
    const addon = path.join(directory, "r3map_native.node");
    fs.copyFileSync(nativeAddonPath(), addon);
    fs.chmodSync(addon, 0o755);
    const script = `
      const { UffdRegion } = require(${JSON.stringify(addon)});
      try { new UffdRegion({ size: 65536, chunkSize: 65536, onMiss() {} }); console.log("created"); }
      catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
    const child = spawn(process.execPath, ["-e", script], { uid: 65534, gid: 65534, cwd: directory });
    let output = "";
    child.stdout.on("data", (data: Buffer) => {
      output += data.toString();
    });
    await new Promise((resolve) => child.once("exit", resolve));
    const answer = JSON.parse(output) as { code: string; message: string };
    expect(answer.code).toBe("ERR_PERMISSION");
    expect(answer.message).toMatch(/root|\/dev\/userfaultfd/);
  });
});

function startChild(size: number, chunkSize: number, options: Record<string, unknown> = {}) {
  const child: ChildProcess = spawn(
    process.execPath,
    [
      path.join(fixtures, "uffd-child.cjs"),
      nativeAddonPath(),
      JSON.stringify({ size, chunkSize, ...options }),
    ],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  cleanups.push(() => child.kill("SIGKILL"));
  let buffered = "";
  const waiting: Array<(line: string) => void> = [];
  const lines: string[] = [];
  child.stdout?.on("data", (data: Buffer) => {
    buffered += data.toString();
    let newline = buffered.indexOf("\n");
    while (newline >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      const waiter = waiting.shift();
      if (waiter) waiter(line);
      else lines.push(line);
      newline = buffered.indexOf("\n");
    }
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  return {
    process: child,
    exit,
    line: (): Promise<string> => {
      const ready = lines.shift();
      return ready !== undefined ? Promise.resolve(ready) : new Promise((resolve) => waiting.push(resolve));
    },
  };
}
