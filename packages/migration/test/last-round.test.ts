/**
 * A leecher that dies while the seeder's last round runs — after its
 * application was suspended, before the dirty chunks were handed over: the
 * round is void, the seeder goes back to idle with the resource writable and
 * its application resumed, and a new leecher completes.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { testRandom, waitFor } from "@r3map/core/testing";
import { MountCore } from "@r3map/mount";
import { describe, expect, it } from "vitest";
import { Leecher, Seeder } from "../src/index.js";
import { testFileScope } from "./helpers.js";
import { FixtureProcess, unmountLeftover } from "./processes.js";

const size = 16 * 1024 * 1024;
const chunkSize = 64 * 1024;
const { scratch, cleanup } = testFileScope();

describe("the leecher dies during the last round", () => {
  it("the round is void: the seeder is idle, writable, its application resumed, and a new leecher completes", async () => {
    const image = path.join(scratch, "a.img");
    fs.writeFileSync(image, testRandom().bytes(size)); // the seed is printed on failure
    const core = cleanup.add(await MountCore.open("file", { remote: `file://${image}`, chunkSize }), (c) =>
      c.close(),
    );
    let leecher: FixtureProcess | undefined;
    let resumed = 0;
    let lastRound = true;
    const seeder = cleanup.add(
      await Seeder.start(core, {
        hooks: {
          // The first last round: the leecher dies while the application is being suspended, and the
          // seeder has noticed before the round goes on.
          beforeSync: async () => {
            if (!lastRound) return;
            lastRound = false;
            const gone = new Promise<void>((resolve) => seeder.once("leecher-gone", () => resolve()));
            await leecher!.kill();
            await gone;
          },
          afterResume: () => {
            resumed++;
          },
        },
      }),
      (s) => s.close(),
    );
    const phases: string[] = [];
    seeder.on("phase", (phase) => phases.push(phase));

    leecher = new FixtureProcess("leecher-process.mjs", [seeder.url, "file"]);
    const opened = await leecher.line((line) => "path" in line);
    cleanup.add(leecher, async (l) => {
      await l.kill();
      await unmountLeftover(opened.path as string);
    });
    leecher.send("finalize");
    await waitFor(() => resumed === 1, { timeoutMs: 30_000, message: "the application to be resumed" });
    expect(seeder.phase).toBe("idle");
    expect(phases).not.toContain("synced");
    // Writable again: the application's next write lands.
    const handle = await fs.promises.open(core.handle.path!, "r+");
    await handle.write(Buffer.from("still here"), 0, 10, 4096);
    await handle.close();

    const next = cleanup.add(await Leecher.open(seeder.url, { as: "file" }), (l) => l.close());
    await next.finalize();
    await next.release();
    await seeder.migrated;
    const [here, there] = await Promise.all([
      fs.promises.readFile(next.path!),
      fs.promises.readFile(core.handle.path!),
    ]);
    expect(Buffer.compare(here, there), "the new leecher's bytes").toBe(0);
    expect(here.subarray(4096, 4106).toString()).toBe("still here");
  });
});
