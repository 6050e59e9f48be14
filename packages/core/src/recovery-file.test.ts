import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MemoryBackend } from "./backends/memory.js";
import { applyRecoveryFile, readRecoveryFile, writeRecoveryFile } from "./recovery-file.js";
import { patternBytes } from "./testing/index.js";

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "r3map-recovery-"));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

const chunkSize = 64 * 1024;
// The last chunk is short: the records must carry its real length.
const size = 10 * chunkSize + 1000;
const source = { remote: "nbd://127.0.0.1:1/x", schemes: ["@r3map/nbd"], size, chunkSize };

/** A local cache whose chunks 1, 4 and 10 (the short last one) changed. */
function changedCache(): { local: MemoryBackend; chunks: number[] } {
  const local = new MemoryBackend(size);
  const chunks = [1, 4, 10];
  for (const chunk of chunks) {
    const length = Math.min(chunkSize, size - chunk * chunkSize);
    void local.writeAt(patternBytes(length, chunk + 7), chunk * chunkSize);
  }
  return { local, chunks };
}

async function save(file: string) {
  const { local, chunks } = changedCache();
  return writeRecoveryFile(file, source, chunks, (chunk, into) => local.readAt(into, chunk * chunkSize));
}

describe("recovery files", () => {
  it("hold the changed chunks and apply them to a remote, leaving the other chunks alone", async () => {
    const saved = await save(path.join(scratch, "a.r3rec"));
    expect(saved).toEqual({ file: path.join(scratch, "a.r3rec"), chunks: 3, bytes: 2 * chunkSize + 1000 });
    expect(fs.readdirSync(scratch).filter((name) => name.startsWith("a.r3rec"))).toEqual(["a.r3rec"]);
    expect(fs.statSync(saved.file).mode & 0o777).toBe(0o600);
    const header = await readRecoveryFile(saved.file);
    expect(header).toMatchObject({ ...source, chunks: 3, bytes: saved.bytes });

    const remote = new MemoryBackend(size);
    const untouched = patternBytes(chunkSize, 99);
    await remote.writeAt(untouched, 0);
    const progress: number[] = [];
    await applyRecoveryFile(saved.file, remote, (done) => progress.push(done));
    expect(progress).toEqual([1, 2, 3]);
    const { local } = changedCache();
    await local.writeAt(untouched, 0);
    const [want, got] = [new Uint8Array(size), new Uint8Array(size)];
    await local.readAt(want, 0);
    await remote.readAt(got, 0);
    expect(Buffer.compare(got, want)).toBe(0);
  });

  it("create the directory they go to", async () => {
    const saved = await save(path.join(scratch, "state", "r3map", "recovery", "d.r3rec"));
    expect((await readRecoveryFile(saved.file)).chunks).toBe(3);
  });

  it("never replace an earlier recovery file", async () => {
    const first = await save(path.join(scratch, "b.r3rec"));
    const second = await save(path.join(scratch, "b.r3rec"));
    expect(second.file).toBe(`${first.file}-1`);
    await readRecoveryFile(first.file);
    await readRecoveryFile(second.file);
  });

  it("refuse a file cut short or damaged, applying nothing", async () => {
    const saved = await save(path.join(scratch, "c.r3rec"));
    const whole = fs.readFileSync(saved.file);
    const remote = new MemoryBackend(size);
    const cut = path.join(scratch, "cut.r3rec");
    for (const length of [whole.length - 1, whole.length - 100, 40, 0]) {
      fs.writeFileSync(cut, whole.subarray(0, length));
      await expect(applyRecoveryFile(cut, remote)).rejects.toMatchObject({ code: "ERR_INTEGRITY" });
    }
    const flipped = Buffer.from(whole);
    flipped[flipped.length - 1000]! ^= 1;
    fs.writeFileSync(cut, flipped);
    await expect(applyRecoveryFile(cut, remote)).rejects.toMatchObject({ code: "ERR_INTEGRITY" });
    const back = new Uint8Array(size);
    await remote.readAt(back, 0);
    expect(back.every((byte) => byte === 0)).toBe(true);
    await expect(applyRecoveryFile(saved.file, new MemoryBackend(size + 1))).rejects.toMatchObject({
      code: "ERR_INVALID_ARGUMENT",
    });
  });
});
