import type * as http2 from "node:http2";
import { fileURLToPath } from "node:url";
import { fuzzSettings, patternBytes, type ServerProcess, startServerProcess } from "@r3map/core/testing";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectBackend, DEFAULT_MAX_REQUEST_BYTES } from "../src/index.js";
import { type Call, type ConnectCase, connectCase, type Target } from "./fuzz/messages.js";
import { connectH2 } from "./raw-h2.js";

/**
 * Seeded random Connect, gRPC and gRPC-web calls against a Connect server
 * process (`pnpm fuzz` runs it for as long as asked). After every case: the
 * server runs, its peak RSS is within 256 MiB of where it started, every
 * answer read to the end has come, and a fresh r3map client reads the
 * protected region back as written.
 */

const MiB = 1024 * 1024;
const target: Target = {
  size: 64 * MiB,
  protectedBytes: 256 * 1024,
  maxRequestBytes: DEFAULT_MAX_REQUEST_BYTES,
};
const CASE_TIMEOUT_MS = 20_000;
const settings = fuzzSettings("connect", 1000, CASE_TIMEOUT_MS);
const fixture = fileURLToPath(new URL("./fixtures/serve.mjs", import.meta.url));
const golden = patternBytes(target.protectedBytes, 13);

/** Sends one call; resolves when its stream is over (or, for `never`, at once). */
function send(session: http2.ClientHttp2Session, one: Call): Promise<void> {
  let stream: http2.ClientHttp2Stream;
  try {
    stream = session.request({ ":method": "POST", ":path": one.path, ...one.headers });
  } catch {
    return Promise.resolve(); // a request node's client refuses to send is no case for the server
  }
  stream.on("error", () => {});
  const over = new Promise<void>((resolve) => stream.once("close", () => resolve()));
  if (one.reading === "never") stream.pause();
  else if (one.reading === "cut") stream.once("response", () => stream.close());
  else stream.resume();
  stream.end(one.body);
  return one.reading === "never" ? Promise.resolve() : over;
}

async function play(baseUrl: string, one: ConnectCase): Promise<void> {
  const session = await connectH2(baseUrl);
  try {
    let timer: NodeJS.Timeout | undefined;
    const hung = new Promise<"hung">((resolve) => {
      timer = setTimeout(() => resolve("hung"), CASE_TIMEOUT_MS);
    });
    const outcome = await Promise.race([Promise.all(one.calls.map((call) => send(session, call))), hung]);
    clearTimeout(timer);
    if (outcome === "hung") throw new Error(`a call was not answered within ${CASE_TIMEOUT_MS} ms`);
  } finally {
    session.destroy();
  }
}

describe("fuzz: Connect messages against a server process", () => {
  let server: ServerProcess<{ baseUrl: string }>;
  let start = 0;
  let cases = 0;

  beforeAll(async () => {
    server = await startServerProcess<{ baseUrl: string }>(fixture, [`memory:?size=${target.size}`]);
    const client = await ConnectBackend.connect({ baseUrl: server.info.baseUrl });
    await client.writeAt(golden, 0);
    await client.close();
    start = server.rss();
    server.resetPeak();
  });
  afterAll(() => server?.stop());

  it(
    `keeps serving the right bytes within bounded memory (seed ${settings.seed})`,
    async () => {
      const property = fc.asyncProperty(connectCase(target), async (one) => {
        cases++;
        await play(server.info.baseUrl, one);
        expect(server.alive(), `the server died: ${server.stderr()}`).toBe(true);
        const grown = server.peakRss() - start;
        expect(grown, `peak RSS grew by ${(grown / MiB).toFixed(0)} MiB`).toBeLessThan(256 * MiB);
        const client = await ConnectBackend.connect({ baseUrl: server.info.baseUrl, retries: 8 });
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
