import * as fs from "node:fs";
import { MemoryBackend } from "@r3map/core";
import { InstrumentedBackend, patternBytes, waitFor } from "@r3map/core/testing";
import { MountCore, mountFile, type SliceDevice } from "@r3map/mount";
import { describe, expect, it } from "vitest";
import { leftovers, leftoversOf, leftoversSince } from "./helpers.js";

const chunkSize = 64 * 1024;
const size = 32 * chunkSize;

function remote(): InstrumentedBackend {
  return new InstrumentedBackend(MemoryBackend.from(patternBytes(size, 21)));
}

describe("mount options", () => {
  it("takes a Backend object on this thread, calls the hooks, and fires onChunkLocal with push off", async () => {
    const backend = remote();
    const calls: string[] = [];
    const local: number[] = [];
    const mount = await mountFile(
      { remote: backend, chunkSize, managed: { pull: false, push: false } },
      {
        hooks: {
          beforeSync: () => {
            calls.push("beforeSync");
          },
          beforeClose: () => {
            calls.push("beforeClose");
          },
          onChunkLocal: (chunk, origin) => local.push(chunk * (origin === "fetch" ? 1 : -1)),
        },
      },
    );
    try {
      // Asynchronous reads only: the engine runs on this thread's event loop.
      const handle = await fs.promises.open(mount.path, "r");
      const bytes = new Uint8Array(100);
      await handle.read(bytes, 0, 100, 5 * chunkSize + 10);
      await handle.close();
      expect(
        Buffer.compare(bytes, patternBytes(size, 21).subarray(5 * chunkSize + 10, 5 * chunkSize + 110)),
      ).toBe(0);
      // No background pull: only the chunks the kernel asked for (its readahead included) were fetched.
      expect(backend.reads.length).toBeLessThan(32);
      expect(local).toContain(5);
      await mount.sync();
    } finally {
      await mount.close();
      await mount.close();
    }
    expect(calls).toEqual(["beforeSync", "beforeClose", "beforeSync"]);
    expect(backend.writes).toEqual([]); // push: false
    expect(leftoversOf([mount])).toEqual([]);
  });

  it("refuses a Backend object on a worker engine", async () => {
    await expect(mountFile({ remote: remote(), chunkSize }, { engine: "worker" })).rejects.toMatchObject({
      code: "ERR_INVALID_ARGUMENT",
    });
  });

  it("pull.first returns only when everything is local; a trace decides the pull order", async () => {
    const backend = remote();
    const trace = [31, 7, 30];
    const mount = await mountFile({
      remote: backend,
      chunkSize,
      managed: { pull: { workers: 1, first: true, order: { trace } }, push: false },
    });
    try {
      const progress = await mount.progress();
      expect(progress?.chunksLocal).toBe(32);
      expect(backend.reads.slice(0, 3).map((offset) => offset / chunkSize)).toEqual(trace);
    } finally {
      await mount.close();
    }
  });

  it("a slice maps pulled chunks as they land: touching them afterwards takes no fault", async () => {
    const backend = remote();
    const core = await MountCore.open(
      "slice",
      { remote: "memory:", chunkSize: 4096, managed: { pull: { workers: 2, first: true }, push: false } },
      {},
      backend,
    );
    const device = core.device as SliceDevice;
    try {
      const chunks = size / 4096;
      // Landed chunks are mapped at the end of the event-loop turn they landed in.
      await waitFor(() => {
        const stats = device.region.stats();
        return stats.filled + stats.resolvedNatively >= chunks;
      }, "every pulled chunk to be mapped");
      // Every chunk mapped ahead — but perhaps the last one, if the fault that primed the miss path at
      // open came first and mapped it.
      const before = device.region.stats();
      expect(before.faults).toBeLessThanOrEqual(1);
      expect(before.filled + before.resolvedNatively).toBe(chunks);
      // Everything is mapped, so this thread may touch the memory although it also runs the engine.
      expect(Buffer.compare(device.buffer, patternBytes(size, 21))).toBe(0);
      expect(device.region.stats().faults).toBe(before.faults);
    } finally {
      await core.close();
    }
  });

  it("an unknown URI scheme fails open with ERR_UNKNOWN_SCHEME and leaves no worker or mount", async () => {
    const before = leftovers();
    await expect(mountFile({ remote: "gopher://127.0.0.1/x" })).rejects.toMatchObject({
      code: "ERR_UNKNOWN_SCHEME",
    });
    expect(leftoversSince(before)).toEqual([]);
  });
});
