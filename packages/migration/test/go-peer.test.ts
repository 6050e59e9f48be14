/**
 * Wire compatibility with the original r3map: a leecher built with grpc-go
 * from the original protos (packages/transport-connect/test/go-peer, `leech`
 * mode) takes a file mount over from our Seeder through the original
 * `Seeder` service alone — Track, ReadAt of every chunk by concurrent
 * workers while the application writes, Sync, the dirty chunks again, Close —
 * and ends with the bytes the seeder held at its last round.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as readline from "node:readline";
import { fileURLToPath } from "node:url";
import { testRandom } from "@r3map/core/testing";
import { MountCore } from "@r3map/mount";
import { describe, expect, it } from "vitest";
import { Seeder } from "../src/index.js";
import { FileWriter, testFileScope } from "./helpers.js";

const buildScript = fileURLToPath(
  new URL("../../transport-connect/scripts/build-go-peer.sh", import.meta.url),
);
const hasGo = spawnSync("go", ["version"]).status === 0;
if (!hasGo) console.warn("skipping the grpc-go leecher test: the go toolchain is not installed");

const size = 64 * 1024 * 1024;
const chunkSize = 64 * 1024;
const { scratch, cleanup } = testFileScope();

/** The Go peer as a child process whose stdout lines can be awaited. */
function goLeecher(args: string[]): { child: ChildProcess; line(prefix: string): Promise<string> } {
  const built = spawnSync("bash", [buildScript], { encoding: "utf8", timeout: 240_000 });
  const binary = built.stdout.trim();
  if (built.status !== 0 || !binary) throw new Error(`building the grpc-go peer failed: ${built.stderr}`);
  const child = spawn(binary, ["leech", ...args], { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (data: Buffer) => {
    stderr += data;
  });
  const seen: string[] = [];
  const waiting: Array<{ prefix: string; resolve: (rest: string) => void }> = [];
  readline.createInterface({ input: child.stdout! }).on("line", (text) => {
    const at = waiting.findIndex((w) => text.startsWith(`${w.prefix} `));
    if (at < 0) return seen.push(text);
    const [waiter] = waiting.splice(at, 1);
    waiter!.resolve(text.slice(waiter!.prefix.length + 1));
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  return {
    child,
    line: (prefix) => {
      const earlier = seen.find((text) => text.startsWith(`${prefix} `));
      if (earlier) return Promise.resolve(earlier.slice(prefix.length + 1));
      return new Promise((resolve, reject) => {
        waiting.push({ prefix, resolve });
        exited.then((code) =>
          reject(new Error(`the grpc-go leecher exited (${code}) before "${prefix}": ${stderr}`)),
        );
      });
    },
  };
}

describe.skipIf(!hasGo)("a grpc-go leecher of the original protocol", { timeout: 300_000 }, () => {
  it("takes over a file mount written during its pre-copy and ends with the seeder's last round (sha256)", async () => {
    const random = testRandom(); // printed on failure; R3MAP_TEST_SEED replays it
    const image = path.join(scratch, "a.img");
    const model = random.bytes(size);
    fs.writeFileSync(image, model);
    const core = cleanup.add(await MountCore.open("file", { remote: `file://${image}`, chunkSize }), (c) =>
      c.close(),
    );
    const file = core.handle.path!;
    let writer: FileWriter | undefined;
    let lastRound = "";
    const seeder = cleanup.add(
      await Seeder.start(core, {
        tokens: ["go-token"],
        hooks: {
          // The original's Sync is the last round: the application stops, then the bytes are what migrates.
          beforeSync: async () => {
            await writer?.stop();
            lastRound = createHash("sha256")
              .update(await fs.promises.readFile(file))
              .digest("hex");
          },
        },
      }),
      (s) => s.close(),
    );
    const tracking = new Promise<void>((resolve) =>
      seeder.on("phase", (phase) => phase === "tracking" && resolve()),
    );
    const go = goLeecher([
      `127.0.0.1:${seeder.control.port}`,
      "go-token",
      String(size),
      String(chunkSize),
      "4",
    ]);
    cleanup.add(go.child, (child) => child.kill("SIGKILL"));
    await tracking;
    // The application writes while the Go workers read; one write is certain to land after Track.
    const handle = await fs.promises.open(file, "r+");
    await handle.write(Buffer.alloc(100_000, 0x3c), 0, 100_000, 3 * 1024 * 1024 + 5);
    await handle.close();
    writer = new FileWriter(file, model, random);
    expect(Number(await go.line("pulled"))).toBe(size / chunkSize);
    go.child.stdin!.write("sync\n");
    const dirty = Number(await go.line("dirty"));
    expect(dirty, "dirty chunks").toBeGreaterThan(0);
    const received = await go.line("sha256");
    expect(received, "the Go leecher's bytes").toBe(lastRound);
    await seeder.migrated;
    expect(seeder.phase).toBe("migrated");
  });
});
