import type * as http2 from "node:http2";
import { fileURLToPath } from "node:url";
import { describeServerFuzz, patternBytes, within } from "@r3map/core/testing";
import fc from "fast-check";
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
    await within(CASE_TIMEOUT_MS, "the answers to a case's calls", () =>
      Promise.all(one.calls.map((call) => send(session, call))),
    );
  } finally {
    session.destroy();
  }
}

describeServerFuzz<{ baseUrl: string }, ConnectCase>({
  suite: "connect",
  title: "Connect messages against a server process",
  fixture: fileURLToPath(new URL("./fixtures/serve.mjs", import.meta.url)),
  args: [`memory:?size=${target.size}`],
  runs: 1000,
  caseTimeoutMs: CASE_TIMEOUT_MS,
  golden: patternBytes(target.protectedBytes, 13),
  // Retries: a fresh client may find the server still refusing for load what the case left running.
  open: ({ baseUrl }) => ConnectBackend.connect({ baseUrl, retries: 8 }),
  play: ({ baseUrl }, one) => play(baseUrl, one),
  assert: (check, options) => fc.assert(fc.asyncProperty(connectCase(target), check), options),
});
