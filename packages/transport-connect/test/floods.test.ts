import { fileURLToPath } from "node:url";
import { patternBytes, type ServerProcess, startServerProcess } from "@r3map/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { ConnectBackend } from "../src/index.js";
import { connectH2, envelope, GRPC, PATH, readAt, unread } from "./raw-h2.js";

/**
 * The Connect flood of issue #22 — 100 concurrent ReadAt of 32 MiB whose
 * answers are never read — against a server in its own process, as `r3map
 * serve --connect` runs it (no token: anyone may call). The server's peak RSS
 * (VmHWM) must stay within 256 MiB of where it started, and a fresh client
 * must read back what was written before. The server as it was grew by 3 GiB.
 */

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const fixture = fileURLToPath(new URL("./fixtures/serve.mjs", import.meta.url));

describe("floods against a Connect server process (default limits)", () => {
  const servers: ServerProcess<{ baseUrl: string }>[] = [];
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
    await Promise.all(servers.splice(0).map((server) => server.stop()));
  });

  async function client(baseUrl: string): Promise<ConnectBackend> {
    const opened = await ConnectBackend.connect({ baseUrl, retries: 8 });
    cleanups.push(() => opened.close());
    return opened;
  }

  it.each([1, 4])(
    "100 concurrent ReadAt of 32 MiB over %i connection(s), answers never read",
    async (connections) => {
      const server = await startServerProcess<{ baseUrl: string }>(fixture, [`memory:?size=${SIZE}`]);
      servers.push(server);
      const data = patternBytes(SIZE, 22);
      await (await client(server.info.baseUrl)).writeAt(data, 0);

      const start = server.rss();
      server.resetPeak();
      const sessions = await Promise.all(
        Array.from({ length: connections }, () => connectH2(server.info.baseUrl)),
      );
      cleanups.push(() => {
        for (const session of sessions) session.destroy();
      });
      const statuses: string[] = [];
      for (let i = 0; i < 100; i++) {
        const stream = unread(sessions[i % connections]!, PATH.readAt, GRPC, envelope(readAt(32 * MiB)));
        stream.on("trailers", (trailers) => statuses.push(String(trailers["grpc-status"])));
      }
      await server.quiet();
      expect(server.alive(), server.stderr()).toBe(true);
      const flooded = server.peakRss();
      expect(
        flooded - start,
        `peak RSS ${(flooded / MiB).toFixed(0)} MiB, started at ${(start / MiB).toFixed(0)} MiB`,
      ).toBeLessThan(256 * MiB);
      // All but the few the byte budget admits are refused: RESOURCE_EXHAUSTED.
      expect(statuses.filter((status) => status === "8").length).toBeGreaterThan(90);

      // Meanwhile a fresh client still reads (calls this small are never refused for bytes).
      const fresh = await ConnectBackend.connect({ baseUrl: server.info.baseUrl, maxRequestBytes: 4096 });
      cleanups.push(() => fresh.close());
      const sample = new Uint8Array(4096);
      await fresh.readAt(sample, SIZE - 4096);
      expect(Buffer.compare(sample, data.subarray(SIZE - 4096))).toBe(0);

      // Once the flood's connections are gone, everything reads back as written.
      for (const session of sessions) session.destroy();
      const back = new Uint8Array(SIZE);
      await (await client(server.info.baseUrl)).readAt(back, 0);
      expect(Buffer.compare(back, data), "bytes read after the flood").toBe(0);

      const peak = server.peakRss();
      expect(peak - start, `peak RSS ${(peak / MiB).toFixed(0)} MiB while reading back`).toBeLessThan(
        256 * MiB,
      );
      if (process.env.R3MAP_FLOOD_REPORT) {
        console.log(JSON.stringify({ start: start / MiB, flooded: flooded / MiB, peak: peak / MiB }));
      }
    },
  );
});
