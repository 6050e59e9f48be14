import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { MountCore } from "@r3map/mount";
import { afterAll, describe, expect, it } from "vitest";
import { Leecher, Seeder } from "../src/index.js";

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "r3map-migration-test-"));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe("smoke", () => {
  it("file: a writer during pre-copy; the leecher ends equal", async () => {
    const size = 16 * 1024 * 1024;
    const chunkSize = 64 * 1024;
    const image = path.join(scratch, "seed.img");
    const model = randomBytes(size);
    fs.writeFileSync(image, model);
    const core = await MountCore.open("file", { remote: `file://${image}`, chunkSize });
    const seeder = await Seeder.start(core);
    const leecher = await Leecher.open(seeder.url, { as: "file" });
    const handle = await fs.promises.open(core.handle.path!, "r+");
    for (let i = 0; i < 50; i++) {
      const data = randomBytes(1 + Math.floor(Math.random() * 100_000));
      const offset = Math.floor(Math.random() * (size - data.length));
      await handle.write(data, 0, data.length, offset);
      data.copy(model, offset);
    }
    await handle.close();
    const { dirty, downtimeMs } = await leecher.finalize();
    console.log({ dirty: dirty.length, downtimeMs });
    const copy = await fs.promises.readFile(leecher.path!);
    expect(Buffer.compare(copy, model)).toBe(0);
    await leecher.release();
    await seeder.migrated;
    await leecher.close();
    await seeder.close();
    await core.close();
  });
});
