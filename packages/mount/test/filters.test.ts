/**
 * Filters: stages a description places on the remote by name, built on the
 * engine's thread (a worker here) from a package the description names.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { mountFile } from "@r3map/mount";
import { readAt } from "@r3map/mount/testing";
import { afterAll, describe, expect, it } from "vitest";
import { scratchDir } from "./helpers.js";

const scratch = scratchDir();
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

const countingFilter = pathToFileURL(path.join(import.meta.dirname, "fixtures/counting-filter.mjs")).href;

describe("filters", () => {
  it("a counting filter named in the description sees every fetch and push of a managed file mount", async () => {
    const chunkSize = 64 * 1024;
    const log = path.join(scratch, "count.log");
    const image = path.join(scratch, "remote.img");
    fs.writeFileSync(image, Buffer.alloc(16 * chunkSize, 7));
    const mount = await mountFile({
      remote: `file://${image}`,
      chunkSize,
      schemes: [countingFilter],
      filters: [{ name: "count", options: { log } }],
      managed: { pull: false, push: { intervalMs: null } },
    });
    try {
      expect(Buffer.compare(readAt(mount.path, 3 * chunkSize, 100), Buffer.alloc(100, 7))).toBe(0);
      const written = Buffer.alloc(chunkSize, 9);
      const fd = fs.openSync(mount.path, "r+");
      fs.writeSync(fd, written, 0, chunkSize, 8 * chunkSize);
      fs.closeSync(fd);
      await mount.sync();
    } finally {
      await mount.close();
    }
    const lines = fs.readFileSync(log, "utf8").trim().split("\n");
    expect(lines).toContain(`read ${3 * chunkSize} ${chunkSize}`);
    expect(lines).toContain(`write ${8 * chunkSize} ${chunkSize}`);
    // The filter sat on the remote: the write went through it to the file.
    expect(readAt(image, 8 * chunkSize, 4)).toEqual(Buffer.alloc(4, 9));
  });

  it("an unknown filter fails the open with a clear error and leaves nothing mounted", async () => {
    await expect(
      mountFile({ remote: "memory:?size=1MiB", filters: [{ name: "no-such-filter" }] }),
    ).rejects.toMatchObject({
      code: "ERR_INVALID_ARGUMENT",
      message: expect.stringContaining("no-such-filter"),
    });
  });
});
