import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DirectoryBackend } from "./backends/directory.js";
import { FileBackend } from "./backends/file.js";
import { MemoryBackend } from "./backends/memory.js";
import { openBackend, registerBackendScheme, registeredBackendSchemes } from "./uri.js";

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "r3map-uri-"));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe("backend URIs", () => {
  it("opens memory:, file: and dir: backends", async () => {
    const memory = await openBackend("memory:?size=1MiB");
    expect(memory).toBeInstanceOf(MemoryBackend);
    expect(memory.size).toBe(1024 * 1024);

    const file = await openBackend(`file://${scratch}/disk%20one.img?size=64KiB&create=1`);
    expect(file).toBeInstanceOf(FileBackend);
    expect(fs.statSync(path.join(scratch, "disk one.img")).size).toBe(65536);
    await file.close();
    const reopened = await openBackend(`file://${scratch}/disk%20one.img?readOnly=1`);
    expect([reopened.size, reopened.readOnly]).toEqual([65536, true]);
    await reopened.close();

    const dir = await openBackend(`dir://${scratch}/chunks?size=1MiB&chunk=64KiB&maxOpen=3`);
    expect(dir).toBeInstanceOf(DirectoryBackend);
    expect((dir as DirectoryBackend).layout.chunkSize).toBe(65536);
    await dir.close();
  });

  it("names the known schemes when one is unknown", async () => {
    await expect(openBackend("gopher://x")).rejects.toMatchObject({
      code: "ERR_UNKNOWN_SCHEME",
      message: expect.stringMatching(/dir, file, memory/),
    });
  });

  it("says which parameter is missing or malformed", async () => {
    await expect(openBackend("memory:")).rejects.toThrow(/needs a "size" parameter/);
    await expect(openBackend("memory:?size=lots")).rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT" });
    await expect(openBackend("not a uri")).rejects.toMatchObject({ code: "ERR_INVALID_ARGUMENT" });
  });

  it("lets packages register schemes", async () => {
    registerBackendScheme("test-zeros", (url) => new MemoryBackend(Number(url.searchParams.get("n"))));
    expect(registeredBackendSchemes()).toContain("test-zeros");
    expect((await openBackend("test-zeros:?n=7")).size).toBe(7);
  });
});
