/** The README's runnable example, run as written: it migrates, checks the bytes and seeds on. */
import { execFile } from "node:child_process";
import * as path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const example = path.join(import.meta.dirname, "..", "examples", "migrate-file.mjs");

describe("examples/migrate-file.mjs", () => {
  it("migrates a written file mount, ends equal to the last round, and seeds it on", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [example], { timeout: 120_000 });
    expect(stdout).toMatch(/^A: seeding \/\S+ at r3map\+h2c:\/\/127\.0\.0\.1:\d+$/m);
    expect(stdout).toMatch(/^A: the application stopped after \d+ writes$/m);
    expect(stdout).toMatch(/^B: unlocked after [\d.]+ ms; \d+ chunks changed during pre-copy$/m);
    expect(stdout).toMatch(/equals A's last round: true$/m);
    expect(stdout).toMatch(/^B: seeding on at r3map\+h2c:/m);
  });
});
