import { readFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type ServerProcess, startServerProcess } from "@r3map/core/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CMD, OPT, REQUEST_MAGIC } from "../src/protocol.js";
import { optionRequest } from "../src/wire.js";
import { connectRaw, type FloodResult, flood, repeated } from "./flood.js";
import { have, randomFile, run, scratchDir } from "./helpers.js";
import { RawClient } from "./raw-client.js";

/**
 * The floods of issue #22, each replayed against a server in its own process
 * — what `r3map serve 'memory:?size=64MiB'` runs, with the default limits —
 * by raw sockets that send as fast as the server takes and never read. The
 * server's peak RSS (VmHWM) must stay within 256 MiB of where it started, and
 * `nbdcopy` must read back the bytes uploaded before the flood.
 *
 * Each flood is large enough that the server as it was (every reply queued,
 * counted at its 16 bytes) grew by far more than 256 MiB.
 */

const MiB = 1024 * 1024;
const BOUND = 256 * MiB;
const fixture = fileURLToPath(new URL("./fixtures/serve.mjs", import.meta.url));
const ready = have("nbdcopy", "nbdinfo");

/** `count` pipelined request headers of `command`, zero length. */
function requests(command: number, count: number): Buffer {
  const header = Buffer.alloc(28);
  header.writeUInt32BE(REQUEST_MAGIC, 0);
  header.writeUInt16BE(command, 6);
  return repeated(header, count);
}

describe.skipIf(!ready)("floods against a server process (default limits)", () => {
  const scratch = scratchDir();
  const source = join(scratch.path, "source.bin");
  const servers: ServerProcess<{ port: number }>[] = [];

  async function server(options: Record<string, unknown> = {}): Promise<ServerProcess<{ port: number }>> {
    const started = await startServerProcess<{ port: number }>(fixture, [
      "memory:?size=64MiB",
      JSON.stringify(options),
    ]);
    servers.push(started);
    await run("nbdcopy", [source, uri(started)]);
    return started;
  }

  const uri = (target: ServerProcess<{ port: number }>) => `nbd://127.0.0.1:${target.info.port}/`;

  beforeAll(async () => {
    await randomFile(source, 64);
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((target) => target.stop()));
  });
  afterAll(() => scratch.remove());

  /**
   * Runs `floods` at once (one per connection) and waits until the server has
   * taken in what it will; then checks the server: still running, peak RSS
   * within the bound, every byte readable as uploaded.
   */
  async function replay(
    target: ServerProcess<{ port: number }>,
    floods: Array<() => Promise<{ result: FloodResult; socket: Socket }>>,
  ): Promise<FloodResult[]> {
    const start = target.rss();
    target.resetPeak();
    const sockets: Socket[] = [];
    let results: FloodResult[];
    try {
      const done = await Promise.all(floods.map((one) => one()));
      sockets.push(...done.map(({ socket }) => socket));
      results = done.map(({ result }) => result);
      expect(target.alive(), target.stderr()).toBe(true);
      await target.quiet();
    } finally {
      for (const socket of sockets) socket.destroy();
    }
    const out = join(scratch.path, "out.bin");
    await run("nbdcopy", [uri(target), out]);
    expect(Buffer.compare(await readFile(out), await readFile(source)), "bytes read after the flood").toBe(0);
    await run("nbdinfo", [uri(target)]);
    const peak = target.peakRss();
    if (process.env.R3MAP_FLOOD_REPORT) {
      console.log(JSON.stringify({ start: start / MiB, peak: peak / MiB, results }));
    }
    expect(
      peak - start,
      `peak RSS ${(peak / MiB).toFixed(0)} MiB, started at ${(start / MiB).toFixed(0)} MiB`,
    ).toBeLessThan(BOUND);
    return results;
  }

  /** Options in the handshake, as fast as the server takes them, replies never read. */
  const optionFlood = (target: ServerProcess<{ port: number }>, count: number) => async () => {
    const socket = await connectRaw(target.info.port);
    socket.write(Buffer.from([0, 0, 0, 1])); // fixed newstyle; the greeting is never read
    const result = await flood(
      socket,
      repeated(optionRequest(OPT.LIST), 10_000),
      count / 10_000,
      target.cpuMs,
    );
    return { result, socket };
  };

  /** Requests after GO, as fast as the server takes them, replies never read. */
  const requestFlood =
    (target: ServerProcess<{ port: number }>, command: number, count: number) => async () => {
      const { socket } = await RawClient.open(target.info.port, "");
      const result = await flood(socket, requests(command, 10_000), count / 10_000, target.cpuMs);
      return { result, socket };
    };

  it("NBD_OPT_LIST, 1 connection: 1.5 M options, replies never read", async () => {
    const target = await server();
    const [result] = await replay(target, [optionFlood(target, 1_500_000)]);
    // Cut off after maxHandshakeOptions (1024), long before the flood ends.
    expect(result!.closed || result!.heldBack).toBe(true);
  });

  it("NBD_OPT_LIST, 4 connections: 1 M options each, replies never read", async () => {
    const target = await server();
    await replay(
      target,
      Array.from({ length: 4 }, () => optionFlood(target, 1_000_000)),
    );
  });

  it("NBD_OPT_LIST without the option cap: backpressure alone holds the handshake", async () => {
    const target = await server({ maxHandshakeOptions: 1_000_000_000 });
    const results = await replay(
      target,
      Array.from({ length: 4 }, () => optionFlood(target, 1_000_000)),
    );
    expect(results.every((result) => !result.closed)).toBe(true);
  });

  it("pipelined unknown commands, 1 connection: 2 M requests, replies never read", async () => {
    const target = await server();
    await replay(target, [requestFlood(target, 77, 2_000_000)]);
  });

  it.each([
    [1, 1_500_000],
    [4, 500_000],
    [8, 250_000],
  ])(
    "pipelined zero-length READs, %i connection(s): %i requests each, never read",
    async (connections, count) => {
      const target = await server();
      await replay(
        target,
        Array.from({ length: connections }, () => requestFlood(target, CMD.READ, count)),
      );
    },
  );
});
