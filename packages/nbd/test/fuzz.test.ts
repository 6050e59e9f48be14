import * as net from "node:net";
import { fileURLToPath } from "node:url";
import { describeServerFuzz, patternBytes, within } from "@r3map/core/testing";
import fc from "fast-check";
import { connectNbd } from "../src/index.js";
import { DEFAULT_MAX_BLOCK } from "../src/protocol.js";
import { type NbdCase, nbdCase, type Target } from "./fuzz/frames.js";

/**
 * Seeded random NBD traffic against a server process (`pnpm fuzz` runs it
 * for as long as asked). After every case: the server runs, its peak RSS is
 * within 256 MiB of where it started, and a fresh client reads the protected
 * region back as it was written (writes go elsewhere, but for writes the
 * server must refuse, which aim at it too). A case whose client closes its
 * side must see the server close the connection too: it must not hang.
 */

const MiB = 1024 * 1024;
// The protected region is read whole after every case, so a case that changed it is the one that fails.
const target: Target = { size: 64 * MiB, protectedBytes: 256 * 1024, maxBlock: DEFAULT_MAX_BLOCK };
const CASE_TIMEOUT_MS = 20_000;

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
    await within(
      CASE_TIMEOUT_MS,
      "the server closing the connection after the client closed its side",
      () => closed,
    );
  } finally {
    socket.destroy();
  }
}

describeServerFuzz<{ port: number }, NbdCase>({
  suite: "nbd",
  title: "NBD frames against a server process",
  fixture: fileURLToPath(new URL("./fixtures/serve.mjs", import.meta.url)),
  args: [`memory:?size=${target.size}`],
  runs: 2000,
  caseTimeoutMs: CASE_TIMEOUT_MS,
  golden: patternBytes(target.protectedBytes, 12),
  open: ({ port }) => connectNbd({ port, retry: { attempts: 0 } }),
  play: ({ port }, one) => play(port, one),
  assert: (check, options) => fc.assert(fc.asyncProperty(nbdCase(target), check), options),
});
