import * as fs from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { firstLine, r3map, stopAll } from "./support.js";

afterEach(stopAll);

describe("--json: NDJSON events", () => {
  it("streams a managed mount's events until done, with 100 000 000 pull workers capped at its 64 chunks", async () => {
    const server = r3map(["serve", "memory:?size=16MiB", "--nbd", "127.0.0.1:0", "--print-uri"]);
    const remote = await firstLine(server);
    // 16 MiB in 256 KiB chunks: 64 chunks. Uncapped, the workers spun a core and ran out of memory.
    const mount = r3map([
      "mount",
      remote,
      "--managed",
      "--chunk-size",
      "256KiB",
      "--pull-workers",
      "100000000",
      "--push-interval",
      "0",
      "--json",
    ]);
    await mount.until(
      (r) => r.events().some((e) => e.event === "progress" && e.done === e.total),
      "a progress event with every chunk local",
      60_000,
    );
    const path = String(mount.events().find((e) => e.event === "start")?.path);
    fs.writeFileSync(path, Buffer.alloc(4096, 7), { flag: "r+" });
    const result = await mount.stop();
    expect(result.status, result.stderr).toBe(0);

    const events = mount.events();
    const names = events.map((e) => e.event);
    expect(names[0]).toBe("warning");
    expect(events[0]!.message).toBe("--pull-workers 100000000 is more than the 64 chunks; 64 pull at once");
    expect(names[1]).toBe("start");
    expect(events[1]).toMatchObject({
      command: "mount",
      path,
      size: 16 * 1024 * 1024,
      as: "file",
      mode: "managed",
    });
    expect(names.at(-1)).toBe("done");
    expect(events.at(-1)).toMatchObject({ exitStatus: 0, path });
    expect(events.at(-1)!.bytesPushed).toBeGreaterThanOrEqual(4096);
    const progress = events.filter((e) => e.event === "progress");
    expect(progress.length).toBeGreaterThan(0);
    for (const e of progress) {
      expect(e).toMatchObject({ label: "local", total: 16 * 1024 * 1024, chunksTotal: 64 });
      expect(typeof e.rate).toBe("number");
      expect(e.eta === null || typeof e.eta === "number").toBe(true);
    }
    for (const e of events) expect(Date.parse(String(e.time))).not.toBeNaN();
    // The human side: one line per event kind, never a JSON line.
    expect(mount.stderr).toContain("r3map: warning: --pull-workers 100000000 is more than the 64 chunks");
    expect(mount.stderr).toMatch(/closed: .* unmounted, every write pushed/);
    expect(mount.stderr).not.toContain('"event"');

    const served = await server.stop();
    expect(served.status).toBe(0);
  });

  it("streams serve's start and done", async () => {
    const server = r3map(["serve", "memory:?size=1MiB", "--nbd", "127.0.0.1:0", "--json"]);
    await server.until((r) => r.stdout.includes("\n"), "the start event");
    const result = await server.stop("SIGINT");
    expect(result.status).toBe(0);
    expect(server.events()).toMatchObject([
      {
        event: "start",
        command: "serve",
        size: 1024 * 1024,
        readOnly: false,
        nbd: expect.stringMatching(/^nbd:\/\//),
      },
      { event: "done", command: "serve", exitStatus: 0 },
    ]);
  });

  it("ends the demo with its migration step's numbers: the memory moved while written, verified", async () => {
    const demo = r3map(["demo", "--size", "16MiB", "--chunk-size", "64KiB", "--json"]);
    const result = await demo.exited;
    expect(result.status, result.stderr).toBe(0);
    expect(demo.events().at(-1)).toMatchObject({
      event: "done",
      command: "demo",
      exitStatus: 0,
      verified: true,
      migration: {
        writes: expect.any(Number),
        dirtyChunks: expect.any(Number),
        downtimeMs: expect.any(Number),
        totalMs: expect.any(Number),
      },
    });
    const { migration } = demo.events().at(-1) as { migration: { writes: number; dirtyChunks: number } };
    // The application wrote during pre-copy, and what it changed was fetched again.
    expect(migration.writes).toBeGreaterThan(0);
    expect(migration.dirtyChunks).toBeGreaterThan(0);
  });
});
