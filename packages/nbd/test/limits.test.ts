import type * as net from "node:net";
import { MemoryBackend } from "@r3map/core";
import { InstrumentedBackend, patternBytes, waitFor } from "@r3map/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { connectNbd, NbdServer, type NbdServerOptions } from "../src/index.js";
import { CMD, CMD_FLAG, INFO, OPT, REP, REPLY_TYPE, REQUEST_MAGIC } from "../src/protocol.js";
import { lengthPrefixed, optionRequest } from "../src/wire.js";
import { RawClient } from "./raw-client.js";

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const EINVAL = 22;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function serve(
  options: Partial<NbdServerOptions> = {},
  backend = new InstrumentedBackend(new MemoryBackend(SIZE)),
): Promise<{ server: NbdServer; port: number; backend: InstrumentedBackend }> {
  const server = new NbdServer({ exports: [{ name: "", backend }], ...options });
  cleanups.push(() => server.close());
  const { port } = (await server.listen({ port: 0 })) as net.AddressInfo;
  return { server, port, backend };
}

async function raw(port: number, structured = false): Promise<RawClient> {
  const client = await RawClient.open(port, "", structured);
  cleanups.push(() => client.socket.destroy());
  return client;
}

/** Pipelined request headers, `count` of them, with cookies from 1. */
function requests(count: number, command: number, length = 0): Buffer {
  const out = Buffer.alloc(28 * count);
  for (let i = 0; i < count; i++) {
    out.writeUInt32BE(REQUEST_MAGIC, i * 28);
    out.writeUInt16BE(command, i * 28 + 6);
    out.writeUInt32BE(i + 1, i * 28 + 12);
    out.writeUInt32BE(length, i * 28 + 24);
  }
  return out;
}

/** Negotiates structured replies and base:allocation, then GO, on a raw connection. */
async function rawWithBlockStatus(port: number): Promise<RawClient> {
  const client = await RawClient.connect(port);
  cleanups.push(() => client.socket.destroy());
  await client.reader.take(18);
  client.socket.write(Buffer.from([0, 0, 0, 3]));
  client.socket.write(optionRequest(OPT.STRUCTURED_REPLY));
  expect((await client.optionReply()).type).toBe(REP.ACK);
  const query = Buffer.concat([
    lengthPrefixed(""),
    Buffer.from([0, 0, 0, 1]),
    lengthPrefixed("base:allocation"),
  ]);
  client.socket.write(optionRequest(OPT.SET_META_CONTEXT, query));
  expect((await client.optionReply()).type).toBe(REP.META_CONTEXT);
  expect((await client.optionReply()).type).toBe(REP.ACK);
  client.socket.write(
    optionRequest(OPT.GO, Buffer.concat([lengthPrefixed(""), Buffer.from([0, 1, 0, INFO.BLOCK_SIZE])])),
  );
  for (let reply = await client.optionReply(); reply.type !== REP.ACK; reply = await client.optionReply()) {
    expect(reply.type).toBe(REP.INFO);
  }
  return client;
}

/** Sums a BLOCK_STATUS chunk's descriptor lengths. */
function describedBytes(payload: Buffer): number {
  let total = 0;
  for (let at = 4; at < payload.length; at += 8) total += payload.readUInt32BE(at);
  return total;
}

describe("BLOCK_STATUS stays inside the request and the export", () => {
  it("refuses a length of 0 — at the export's end it used to describe a byte past the end", async () => {
    const { port } = await serve();
    const client = await rawWithBlockStatus(port);
    client.send(CMD.BLOCK_STATUS, SIZE, 0, 1);
    const atEnd = await client.chunk();
    expect(atEnd.type, "a descriptor for a range past the end").toBe(REPLY_TYPE.ERROR);
    expect(atEnd.payload.readUInt32BE(0)).toBe(EINVAL);
    client.send(CMD.BLOCK_STATUS, 4096, 0, 2);
    expect((await client.chunk()).type).toBe(REPLY_TYPE.ERROR);
    // Lengths that are allowed are described exactly, up to the last byte.
    for (const [offset, length, flags] of [
      [SIZE - 4096, 4096, 0],
      [SIZE - 1, 1, CMD_FLAG.REQ_ONE],
      [0, SIZE, 0],
    ] as const) {
      client.send(CMD.BLOCK_STATUS, offset, length, 3, flags);
      const reply = await client.chunk();
      expect(reply.type).toBe(REPLY_TYPE.BLOCK_STATUS);
      expect(describedBytes(reply.payload)).toBe(length);
    }
  });
});

describe("a client that stalls", () => {
  it("is dropped when a WRITE's payload stops arriving (16 MiB announced, 1 byte sent)", async () => {
    const { server, port, backend } = await serve({ stallTimeoutMs: 300 });
    const disconnects: Array<Error | undefined> = [];
    server.on("disconnect", ({ error }) => disconnects.push(error));
    const client = await raw(port);
    const writes = backend.writes.length;
    client.send(CMD.WRITE, 0, 16 * MiB, 1, 0, Buffer.from([0xee]));
    await waitFor(
      () => client.socket.destroyed || client.reader.failure !== undefined,
      "the server to hang up",
    );
    await waitFor(() => server.connectionCount === 0, "the connection to end");
    expect(String(disconnects[0])).toMatch(/stopped sending a request for 300 ms/);
    expect(backend.writes.length).toBe(writes);
    expect(server.bufferedBytes).toBe(0);
  });

  it("is dropped when it stops in the middle of a request header", async () => {
    const { server, port } = await serve({ stallTimeoutMs: 300 });
    const client = await raw(port);
    client.socket.write(requests(1, CMD.READ, 512).subarray(0, 10));
    await client.closed();
    await waitFor(() => server.connectionCount === 0, "the connection to end");
  });

  it("is dropped when it does not read its replies, and the memory they held is given back", async () => {
    const { server, port } = await serve({ stallTimeoutMs: 300, maxBufferedBytes: 4 * MiB });
    const client = await raw(port);
    client.socket.pause();
    client.socket.write(requests(64, CMD.READ, MiB));
    await waitFor(() => server.connectionCount === 0, {
      message: "the server to drop the client",
      timeoutMs: 20_000,
    });
    expect(server.bufferedBytes).toBe(0);
  });

  it("keeps a client that waits for a slow backend, however long", async () => {
    const { server, port, backend } = await serve({ stallTimeoutMs: 200 });
    const client = await raw(port);
    backend.latencyMs = 1_000;
    client.send(CMD.READ, 0, 4096, 1);
    const reply = await client.simpleReply(4096);
    expect(reply.error).toBe(0);
    expect(server.connectionCount).toBe(1);
  });

  it("is disconnected after idleTimeoutMs of nothing, when one is set", async () => {
    const { server, port } = await serve({ idleTimeoutMs: 300 });
    const disconnects: Array<Error | undefined> = [];
    server.on("disconnect", ({ error }) => disconnects.push(error));
    const client = await raw(port);
    client.send(CMD.READ, 0, 512, 1);
    expect((await client.simpleReply(512)).error).toBe(0);
    await client.closed();
    await waitFor(() => disconnects.length > 0, "the disconnect event");
    expect(String(disconnects[0])).toMatch(/idle for 300 ms/);
  });
});

describe("backpressure", () => {
  /** Watches a while that `check` holds (the kernel's socket buffers absorb a first part of any flood). */
  async function holds(check: () => void): Promise<void> {
    const deadline = Date.now() + 500;
    while (Date.now() < deadline) {
      check();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it("bounds the data all connections hold together (maxTotalBufferedBytes), not their handshakes", async () => {
    const { server, port, backend } = await serve({ maxTotalBufferedBytes: 4 * MiB });
    const start = backend.reads.length;
    for (let i = 0; i < 4; i++) {
      const client = await raw(port);
      client.socket.pause();
      client.socket.write(requests(32, CMD.READ, 4 * MiB));
    }
    await waitFor(() => server.bufferedBytes >= 4 * MiB, "the budget to fill");
    // 4 MiB, and one more request of a connection that held nothing while the server had room.
    await holds(() => expect(server.bufferedBytes).toBeLessThanOrEqual(8 * MiB));
    expect(backend.reads.length - start).toBeLessThan(64);
    // A new client still negotiates and flushes while the data budget is spent.
    const fresh = await raw(port);
    fresh.send(CMD.FLUSH, 0, 0, 1);
    expect((await fresh.simpleReply()).error).toBe(0);
  });

  it("serves a well-behaved client at full depth meanwhile, and gives every byte back", async () => {
    const { server, port } = await serve({ maxInFlight: 4, maxBufferedBytes: 2 * MiB });
    const client = await connectNbd({ port, connections: 2 });
    cleanups.push(() => client.close());
    const data = patternBytes(8 * MiB, 21);
    await client.writeAt(data, 0);
    const back = new Uint8Array(8 * MiB);
    await client.readAt(back, 0);
    expect(Buffer.compare(back, data)).toBe(0);
    await waitFor(() => server.bufferedBytes === 0, "every reply to be sent");
  });
});

describe("the handshake", () => {
  it("ends a negotiation after maxHandshakeOptions options", async () => {
    const { server, port } = await serve({ maxHandshakeOptions: 20 });
    const client = await RawClient.connect(port);
    cleanups.push(() => client.socket.destroy());
    await client.reader.take(18);
    client.socket.write(Buffer.from([0, 0, 0, 1]));
    client.socket.write(Buffer.concat(Array.from({ length: 30 }, () => optionRequest(OPT.LIST))));
    let acks = 0;
    for (;;) {
      const reply = await client.optionReply().catch(() => undefined);
      if (!reply) break;
      if (reply.type === REP.ACK) acks++;
    }
    expect(acks).toBe(20);
    await waitFor(() => server.connectionCount === 0, "the connection to end");
  });

  it("accepts 0 as idleTimeoutMs (never) but refuses other non-positive limits", () => {
    const backend = new MemoryBackend(MiB);
    expect(() => new NbdServer({ exports: [{ name: "", backend }], idleTimeoutMs: 0 })).not.toThrow();
    expect(() => new NbdServer({ exports: [{ name: "", backend }], stallTimeoutMs: 0 })).toThrow(
      /stallTimeoutMs must be a positive integer/,
    );
    expect(() => new NbdServer({ exports: [{ name: "", backend }], maxHandshakeOptions: -1 })).toThrow(
      /maxHandshakeOptions/,
    );
  });
});
