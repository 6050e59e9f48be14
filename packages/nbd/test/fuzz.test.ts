import * as net from "node:net";
import { fileURLToPath } from "node:url";
import { fuzzSettings, patternBytes, type ServerProcess, startServerProcess } from "@r3map/core/testing";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNbd } from "../src/index.js";
import { DEFAULT_MAX_BLOCK } from "../src/protocol.js";
import { type NbdCase, nbdCase, type Target } from "./fuzz/frames.js";

/**
 * Seeded random NBD traffic against a server process (`pnpm fuzz` runs it
 * for as long as asked). After every case: the server runs, its peak RSS is
 * within 256 MiB of where it started, and a fresh client reads the protected
 * region back as it was written (writes go elsewhere, but for writes the
 * server must refuse, which aim at it too). A case whose client closes its side must
 * see the server close the connection too (it must not hang).
 */

const MiB = 1024 * 1024;
// The protected region is read whole after every case, so a case that changed it is the one that fails.
const target: Target = { size: 64 * MiB, protectedBytes: 256 * 1024, maxBlock: DEFAULT_MAX_BLOCK };
const CASE_TIMEOUT_MS = 20_000;
const settings = fuzzSettings("nbd", 2000, CASE_TIMEOUT_MS);
const fixture = fileURLToPath(new URL("./fixtures/serve.mjs", import.meta.url));
const golden = patternBytes(target.protectedBytes, 12);

/** Sends a case's bytes in pieces, reading and dropping whatever the server answers, then ends it. */
async function play(port: number, one: NbdCase): Promise<void> {
  const socket = net.connect(port, "127.0.0.1");
  socket.on("error", () => {});
  socket.on("data", () => {}); // read and drop every reply
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    let from = 0;
    for (const cut of [...one.cuts, one.bytes.length]) {
      if (cut <= from) continue;
      if (socket.destroyed) break;
      await new Promise<void>((resolve) => socket.write(one.bytes.subarray(from, cut), () => resolve()));
      from = cut;
    }
    if (one.ending === "vanish") return;
    socket.end();
    let timer: NodeJS.Timeout | undefined;
    const hung = new Promise<"hung">((resolve) => {
      timer = setTimeout(() => resolve("hung"), CASE_TIMEOUT_MS);
    });
    const outcome = await Promise.race([closed, hung]);
    clearTimeout(timer);
    if (outcome === "hung") {
      throw new Error(
        `the server kept the connection ${CASE_TIMEOUT_MS} ms after the client closed its side`,
      );
    }
  } finally {
    socket.destroy();
  }
}

describe("fuzz: NBD frames against a server process", () => {
  let server: ServerProcess<{ port: number }>;
  let start = 0;
  let cases = 0;

  beforeAll(async () => {
    server = await startServerProcess<{ port: number }>(fixture, [`memory:?size=${target.size}`]);
    const client = await connectNbd({ port: server.info.port });
    await client.writeAt(golden, 0);
    await client.close();
    start = server.rss();
    server.resetPeak();
  });
  afterAll(() => server?.stop());

  it(
    `keeps serving the right bytes within bounded memory (seed ${settings.seed})`,
    async () => {
      const property = fc.asyncProperty(nbdCase(target), async (one) => {
        cases++;
        await play(server.info.port, one);
        expect(server.alive(), `the server died: ${server.stderr()}`).toBe(true);
        const grown = server.peakRss() - start;
        expect(grown, `peak RSS grew by ${(grown / MiB).toFixed(0)} MiB`).toBeLessThan(256 * MiB);
        const client = await connectNbd({ port: server.info.port, retry: { attempts: 0 } });
        try {
          const back = new Uint8Array(target.protectedBytes);
          await client.readAt(back, 0);
          const changed = back.findIndex((byte, i) => byte !== golden[i]);
          if (changed >= 0) {
            await client.writeAt(golden, 0); // the next case (a shrinking step) starts clean
            expect.fail(`the protected region changed at byte ${changed}`);
          }
        } finally {
          await client.close();
        }
      });
      let failure: string | undefined;
      try {
        await fc.assert(property, {
          seed: settings.seed,
          numRuns: settings.numRuns,
          ...(settings.path ? { path: settings.path } : {}),
          interruptAfterTimeLimit: settings.timeLimitMs,
          markInterruptAsFailure: false,
        });
      } catch (error) {
        failure = error instanceof Error ? error.message : String(error);
        throw error;
      } finally {
        settings.report({
          cases,
          startRssBytes: start,
          peakRssBytes: server.peakRss(),
          ...(failure ? { failure } : {}),
        });
      }
    },
    settings.testTimeoutMs,
  );
});
