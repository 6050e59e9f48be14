/**
 * A direct mount passes a partial chunk through as what it is when the remote
 * declares it takes byte ranges, and read-modify-writes whole chunks for a
 * remote keyed by chunk — the choice follows from the backend, not a flag.
 */
import * as fs from "node:fs";
import { type Backend, MemoryBackend } from "@r3map/core";
import { InstrumentedBackend, plainBackend } from "@r3map/core/testing";
import { mountFile } from "@r3map/mount";
import { TestScope } from "@r3map/mount/testing";
import { afterEach, describe, expect, it } from "vitest";

const size = 8 * 1024 * 1024;
const chunkSize = 1024 * 1024;
const scope = new TestScope();
afterEach(async () => {
  expect(await scope.cleanup()).toEqual([]);
});

/** Mounts `remote` directly and writes 4 KiB into chunk 3; `opened` runs once the mount is up (it primed its miss path). */
async function write4k(remote: Backend, opened: () => void): Promise<void> {
  // The engine runs on this thread: the write goes through a libuv pool thread, never this one.
  const mount = scope.mount(await mountFile({ remote, chunkSize }, { engine: "this-thread" }));
  opened();
  const handle = await fs.promises.open(mount.path, fs.constants.O_RDWR | fs.constants.O_DIRECT);
  try {
    await handle.write(Buffer.alloc(4096, 7), 0, 4096, 3 * chunkSize + 8192);
  } finally {
    await handle.close();
  }
}

describe("direct mounts and byte ranges", () => {
  it("a 4 KiB write to a byte-range remote reaches it as 4 KiB, with nothing read", async () => {
    const remote = new InstrumentedBackend(new MemoryBackend(size));
    expect(remote.byteRanges).toBe(true);
    let readsAtOpen = 0;
    await write4k(remote, () => {
      readsAtOpen = remote.reads.length;
    });
    expect(remote.writes).toEqual([3 * chunkSize + 8192]);
    expect(remote.reads.slice(readsAtOpen)).toEqual([]);
  });

  it("a 4 KiB write to a chunk-keyed remote is a read-modify-write of its whole chunk", async () => {
    const memory = new InstrumentedBackend(new MemoryBackend(size));
    // Without the byte-range declaration: a store keyed by chunk, as far as the mount knows.
    await write4k(plainBackend(memory), () => {});
    expect(memory.reads).toContain(3 * chunkSize);
    expect(memory.writes).toEqual([3 * chunkSize]);
  });
});
