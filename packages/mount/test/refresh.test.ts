/**
 * A chunk that changed on the remote and is marked remote again (a
 * migration's dirty chunk, a delta sync) must read as the remote's new bytes
 * through every device — not as the pages the kernel cached when it was
 * read before (the FUSE file is opened with FOPEN_KEEP_CACHE; a block device
 * and a slice's mapping keep theirs too).
 */
import * as fs from "node:fs";
import { testRandom } from "@r3map/core/testing";
import { type Mount, type MountDescription, mountFile, mountPath, mountSlice } from "@r3map/mount";
import { readAt, TestScope, writeAt } from "@r3map/mount/testing";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { NbdkitRemote, randomImage, scratchDir } from "./helpers.js";

const size = 4 * 1024 * 1024;
const chunkSize = 64 * 1024;
const scratch = scratchDir();
const scope = new TestScope();

afterEach(async () => {
  expect(await scope.cleanup()).toEqual([]);
});
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** Reads `[offset, offset+length)` the way a program would: buffered, through the kernel's caches. */
function readThrough(mount: Mount, offset: number, length: number): Buffer {
  if (mount.frontend === "slice") return Buffer.from(mount.buffer.subarray(offset, offset + length));
  return readAt(mount.path!, offset, length);
}

const open = {
  file: (description: MountDescription) => mountFile(description),
  path: (description: MountDescription) => mountPath(description),
  slice: (description: MountDescription) => mountSlice(description),
};

describe.each(["file", "path", "slice"] as const)(
  "%s mount: refresh after the remote changed",
  (frontend) => {
    it.each([
      ["managed", { managed: { pull: false, push: false } } as const],
      ["direct", {}],
    ])("%s: the chunk reads as the remote's new bytes, not the cached ones", async (_kind, mode) => {
      // A direct slice keeps a local copy of what was touched (its memory): it is refreshed like a cache.
      const image = randomImage(scratch, size);
      const remote: NbdkitRemote = scope.add(await NbdkitRemote.start(image), () => remote.kill());
      const mount = await open[frontend]({ remote: remote.uri, chunkSize, ...mode });
      scope.add(mount, () => mount.close());
      const chunk = 5;
      const offset = chunk * chunkSize + 4096;
      const before = readThrough(mount, offset, 8192);
      expect(Buffer.compare(before, fs.readFileSync(image).subarray(offset, offset + 8192))).toBe(0);

      const changed = testRandom().bytes(8192);
      writeAt(image, offset, changed);
      await mount.refresh([chunk]);
      expect(Buffer.compare(readThrough(mount, offset, 8192), changed)).toBe(0);
      // Chunks that were not refreshed still read as before (nothing else was dropped or changed).
      expect(Buffer.compare(readThrough(mount, 0, 4096), fs.readFileSync(image).subarray(0, 4096))).toBe(0);
    });
  },
);
