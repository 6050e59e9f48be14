import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { ChunkBitmap } from "../chunk-bitmap.js";
import { ChunkLayout } from "../chunk-layout.js";
import { errnoOf, fromSystemError, R3mapError } from "../errors.js";
import { nextTurn, testRandom } from "../testing/index.js";
import { formatBytes, parseSize } from "../units.js";
import { deferred } from "./abort.js";
import { KeyedMutex } from "./keyed-mutex.js";
import { Limiter } from "./limiter.js";
import { lookupWithoutThreadpool } from "./lookup.js";
import { ChunkPriorityQueue } from "./priority-queue.js";

describe("ChunkBitmap", () => {
  it("sets, clears and counts bits, reporting whether they changed", () => {
    const bitmap = new ChunkBitmap(100);
    expect(bitmap.set(3)).toBe(true);
    expect(bitmap.set(3)).toBe(false);
    bitmap.set(31);
    bitmap.set(32);
    bitmap.set(99);
    expect(bitmap.cardinality()).toBe(4);
    expect(bitmap.clear(31)).toBe(true);
    expect(bitmap.clear(31)).toBe(false);
    expect([3, 31, 32, 99].map((chunk) => bitmap.has(chunk))).toEqual([true, false, true, true]);
  });

  it("uses the documented word layout (little-endian u32, bit i&31 of word i>>5)", () => {
    const bitmap = new ChunkBitmap(64);
    bitmap.set(0);
    bitmap.set(33);
    const bytes = new Uint8Array(bitmap.buffer);
    expect([...bytes.subarray(0, 8)]).toEqual([1, 0, 0, 0, 2, 0, 0, 0]);
  });

  it("is shared with another thread", async () => {
    const bitmap = new ChunkBitmap(64);
    const worker = new Worker(
      `const { workerData, parentPort } = require("node:worker_threads");
       const words = new Int32Array(workerData);
       Atomics.or(words, 1, 1 << 7);
       parentPort.postMessage("done");`,
      { eval: true, workerData: bitmap.buffer },
    );
    await new Promise((resolve) => worker.once("message", resolve));
    await worker.terminate();
    expect(bitmap.has(39)).toBe(true);
  });

  it("refuses a buffer too small for the count", () => {
    expect(() => new ChunkBitmap(100, new SharedArrayBuffer(4))).toThrow(/needs 16/);
  });
});

describe("ChunkLayout", () => {
  it("counts a short last chunk and refuses impossible geometry", () => {
    const layout = new ChunkLayout(10 * 1024 + 1, 1024);
    expect([layout.count, layout.lengthOf(10), layout.lengthOf(9), layout.span(1000, 48)]).toEqual([
      11,
      1,
      1024,
      [0, 2],
    ]);
    expect(() => new ChunkLayout(4096, 0)).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }));
    expect(() => new ChunkLayout(-1, 4096)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }),
    );
    expect(() => new ChunkLayout(4096, 1.5)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }),
    );
  });
});

describe("ChunkPriorityQueue", () => {
  it("pops highest priority first, ties in ascending chunk order, and re-prioritizes in place", () => {
    const queue = new ChunkPriorityQueue();
    for (const chunk of [5, 1, 9, 3, 7]) queue.push(chunk, 0);
    queue.push(9, 10);
    queue.push(7, 10);
    queue.push(1, -1);
    const order: number[] = [];
    for (let chunk = queue.pop(); chunk !== undefined; chunk = queue.pop()) order.push(chunk);
    expect(order).toEqual([7, 9, 3, 5, 1]);
  });

  it("stays a heap under many random updates", () => {
    const queue = new ChunkPriorityQueue();
    const priorities = new Map<number, number>();
    const random = testRandom();
    for (let i = 0; i < 2000; i++) {
      const chunk = random.below(300);
      const priority = random.below(50);
      queue.push(chunk, priority);
      priorities.set(chunk, priority);
    }
    const popped: number[] = [];
    for (let chunk = queue.pop(); chunk !== undefined; chunk = queue.pop()) popped.push(chunk);
    expect(popped.length).toBe(priorities.size);
    for (let i = 1; i < popped.length; i++) {
      const [a, b] = [priorities.get(popped[i - 1]!)!, priorities.get(popped[i]!)!];
      expect(a > b || (a === b && popped[i - 1]! < popped[i]!)).toBe(true);
    }
  });
});

describe("KeyedMutex", () => {
  it("runs tasks on one key one at a time in arrival order, and other keys in parallel", async () => {
    const mutex = new KeyedMutex();
    const log: string[] = [];
    // Each task runs until the test finishes it, so the order does not depend on timers.
    const finish = { a: deferred(), b: deferred(), c: deferred() };
    const task = (name: keyof typeof finish) => async () => {
      log.push(`start ${name}`);
      await finish[name].promise;
      log.push(`end ${name}`);
    };
    const all = Promise.all([mutex.run(1, task("a")), mutex.run(1, task("b")), mutex.run(2, task("c"))]);
    await nextTurn();
    expect(log).toEqual(["start a", "start c"]); // b waits for a; c, on another key, does not
    finish.c.resolve();
    await nextTurn();
    expect(log).toEqual(["start a", "start c", "end c"]);
    finish.a.resolve();
    await nextTurn();
    expect(log).toEqual(["start a", "start c", "end c", "end a", "start b"]);
    finish.b.resolve();
    await all;
    expect(log.indexOf("end a")).toBeLessThan(log.indexOf("start b"));
    expect(log.indexOf("start c")).toBeLessThan(log.indexOf("end a"));
    expect(mutex.isLocked(1)).toBe(false);
  });
});

describe("sizes", () => {
  it.each([
    ["4096", 4096],
    ["64KiB", 65536],
    ["1 GiB", 1024 ** 3],
    ["10MB", 10_000_000],
    ["1.5k", 1536],
    ["2G", 2 * 1024 ** 3],
    ["4PiB", 4 * 1024 ** 5],
  ])("parses %s", (text, bytes) => expect(parseSize(text)).toBe(bytes));

  it.each(["", "abc", "12 parsecs", "-5", "0.3"])("refuses %j with ERR_INVALID_ARGUMENT", (text) => {
    expect(() => parseSize(text)).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }));
  });

  it.each(["1EiB", "9PiB", "1e"])("refuses %s, past 2^53 bytes, saying so", (text) => {
    expect(() => parseSize(text)).toThrow(/more than 8 PiB/);
  });

  it("formats", () => {
    expect(formatBytes(1536)).toBe("1.50 KiB");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(3 * 1024 ** 3)).toBe("3.00 GiB");
    expect(formatBytes(2 * 1024 ** 5)).toBe("2.00 PiB");
  });
});

describe("errors", () => {
  it("map to errno names for device replies", () => {
    expect(errnoOf(new R3mapError("ERR_OUT_OF_RANGE", "x"))).toBe("EOVERFLOW");
    expect(errnoOf(new R3mapError("ERR_IO", "x", { errno: "ENOSPC" }))).toBe("ENOSPC");
    expect(errnoOf(Object.assign(new Error("x"), { code: "EACCES" }))).toBe("EACCES");
    expect(errnoOf(new Error("x"))).toBe("EIO");
    // A reader of a device sees EIO when the remote is gone, not a socket error.
    expect(errnoOf(new R3mapError("ERR_REMOTE_UNREACHABLE", "x", { errno: "ECONNREFUSED" }))).toBe("EIO");
    expect(errnoOf(Object.assign(new Error("x"), { code: "ECONNRESET" }))).toBe("EIO");
    expect(errnoOf(new R3mapError("ERR_TIMEOUT", "x"))).toBe("EIO");
  });

  it("classify system errors", () => {
    const full = fromSystemError(Object.assign(new Error("no space"), { code: "ENOSPC" }), "write");
    expect(full).toMatchObject({ code: "ERR_NO_SPACE", errno: "ENOSPC" });
    expect(fromSystemError(Object.assign(new Error("x"), { code: "ECONNREFUSED" }), "dial").code).toBe(
      "ERR_REMOTE_UNREACHABLE",
    );
  });
});

describe("lookupWithoutThreadpool", () => {
  const lookup = (host: string, options: import("node:dns").LookupOptions) =>
    new Promise<unknown>((resolve, reject) =>
      lookupWithoutThreadpool(host, options, (error, address, family) =>
        error ? reject(error) : resolve(options.all ? address : { address, family }),
      ),
    );

  it("answers IP literals, localhost and /etc/hosts without getaddrinfo, in both callback shapes", async () => {
    expect(await lookup("10.1.2.3", {})).toEqual({ address: "10.1.2.3", family: 4 });
    expect(await lookup("localhost", { family: 4 })).toEqual({ address: "127.0.0.1", family: 4 });
    expect(await lookup("localhost", { all: true })).toEqual([
      { address: "127.0.0.1", family: 4 },
      { address: "::1", family: 6 },
    ]);
  });

  it("fails with ENOTFOUND for a name nobody knows (no DNS server answers here)", async () => {
    await expect(lookup("no-such-host.invalid", {})).rejects.toMatchObject({ code: "ENOTFOUND" });
  });

  it("connects a socket through it", async () => {
    const net = await import("node:net");
    const server = net.createServer((socket) => socket.end("hi"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    const port = (server.address() as import("node:net").AddressInfo).port;
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = net.connect({ host: "localhost", port, lookup: lookupWithoutThreadpool, family: 4 });
      let text = "";
      socket.on("data", (data) => {
        text += data;
      });
      socket.on("end", () => resolve(text));
      socket.on("error", reject);
    });
    server.close();
    expect(reply).toBe("hi");
  });
});

describe("Limiter", () => {
  it("runs at most `limit` tasks at once, in arrival order", async () => {
    const limiter = new Limiter(2);
    const started: number[] = [];
    const gates = Array.from({ length: 5 }, () => deferred<void>());
    const tasks = gates.map((gate, i) =>
      limiter.run(async () => {
        started.push(i);
        await gate.promise;
      }),
    );
    await new Promise((resolve) => setImmediate(resolve));
    expect(started).toEqual([0, 1]);
    expect([limiter.running, limiter.waiting]).toEqual([2, 3]);
    gates[1]!.resolve();
    await new Promise((resolve) => setImmediate(resolve));
    expect(started).toEqual([0, 1, 2]);
    for (const gate of gates) gate.resolve();
    await Promise.all(tasks);
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect([limiter.running, limiter.waiting]).toEqual([0, 0]);
  });

  it("drops a waiter whose signal aborts, with ERR_ABORTED, and keeps the order of the rest", async () => {
    const limiter = new Limiter(1);
    const gate = deferred<void>();
    const first = limiter.run(() => gate.promise);
    const controller = new AbortController();
    const aborted = limiter.run(async () => "never", controller.signal);
    const last = limiter.run(async () => "last");
    controller.abort();
    await expect(aborted).rejects.toMatchObject({ code: "ERR_ABORTED" });
    expect(limiter.waiting).toBe(1);
    gate.resolve();
    await first;
    expect(await last).toBe("last");
    await expect(limiter.run(async () => 1, AbortSignal.abort())).resolves.toBe(1); // a free slot never waits
  });
});
