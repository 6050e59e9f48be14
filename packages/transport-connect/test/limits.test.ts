import type * as http2 from "node:http2";
import { isR3mapError, MemoryBackend } from "@r3map/core";
import { InstrumentedBackend, patternBytes } from "@r3map/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { ConnectBackend, ConnectServer, type ConnectServerOptions, OVERLOADED_HEADER } from "../src/index.js";
import {
  CONNECT_STREAM,
  CONNECT_UNARY,
  connectH2,
  envelope,
  exchange,
  GRPC,
  grpcStatus,
  PATH,
  readAt,
  readStream,
  unread,
} from "./raw-h2.js";

const MiB = 1024 * 1024;
const SIZE = 128 * MiB;
/** Not a protobuf message: field 1 with wire type 7, which does not exist. */
const MALFORMED = Buffer.from([0x0f, 0x01, 0x02]);

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function serve(
  options: Partial<ConnectServerOptions> = {},
  backend: InstrumentedBackend = new InstrumentedBackend(new MemoryBackend(SIZE)),
): Promise<{ server: ConnectServer; backend: InstrumentedBackend }> {
  const server = await ConnectServer.listen({ backend, ...options });
  cleanups.push(() => server.close());
  return { server, backend };
}

async function h2(server: ConnectServer): Promise<http2.ClientHttp2Session> {
  const session = await connectH2(server.baseUrl);
  cleanups.push(() => session.destroy());
  return session;
}

/** A client that does not know the server's per-call limit, so it sends what it is given. */
async function unaware(server: ConnectServer, protocol: "grpc" | "connect"): Promise<ConnectBackend> {
  const client = await ConnectBackend.connect({
    baseUrl: server.baseUrl,
    protocol,
    size: SIZE,
    maxRequestBytes: SIZE,
    retries: 0,
  });
  cleanups.push(() => client.close());
  return client;
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("oversized and malformed requests", () => {
  it.each(["grpc", "connect"] as const)(
    "answers a 64 MiB WriteAt over %s with RESOURCE_EXHAUSTED and keeps the connection usable",
    async (protocol) => {
      const { server, backend } = await serve();
      const client = await unaware(server, protocol);
      const writes = backend.writes.length;
      const error = await client.writeAt(new Uint8Array(64 * MiB), 0).catch((e: unknown) => e);
      expect(isR3mapError(error), String(error)).toBe(true);
      expect(String(error)).toMatch(/ResourceExhausted.*larger than the server's limit/);
      expect(backend.writes.length).toBe(writes);
      // The same client, the same connection: the next calls work.
      const data = patternBytes(MiB, 3);
      await client.writeAt(data, 0);
      const back = new Uint8Array(MiB);
      await client.readAt(back, 0);
      expect(Buffer.compare(back, data)).toBe(0);
      expect(server.openSessions).toBe(1);
    },
  );

  it("answers malformed protobuf with INVALID_ARGUMENT in every protocol, and runs nothing", async () => {
    const { server, backend } = await serve();
    const session = await h2(server);
    const writes = backend.writes.length;

    const grpc = await exchange(session, PATH.writeAt, GRPC, envelope(MALFORMED));
    expect(grpcStatus(grpc), JSON.stringify(grpc.trailers)).toBe(3); // INVALID_ARGUMENT

    const unary = await exchange(session, PATH.writeAt, CONNECT_UNARY, MALFORMED);
    expect(unary.status).toBe(400);
    expect(JSON.parse(unary.body.toString())).toMatchObject({ code: "invalid_argument" });

    const stream = await exchange(session, PATH.readStream, CONNECT_STREAM, envelope(MALFORMED));
    // A Connect stream ends with an end-of-stream message (flag 2) carrying the error.
    expect(stream.body[0]).toBe(2);
    expect(JSON.parse(stream.body.subarray(5).toString())).toMatchObject({
      error: { code: "invalid_argument" },
    });

    const truncated = await exchange(session, PATH.writeAt, GRPC, envelope(MALFORMED).subarray(0, 6));
    expect(grpcStatus(truncated)).toBe(3);
    expect(backend.writes.length).toBe(writes);

    // Well-formed calls still work on that connection.
    const ok = await exchange(session, PATH.readAt, GRPC, envelope(readAt(16)));
    expect(grpcStatus(ok)).toBe(0);
  });
});

describe("calls and bytes in flight", () => {
  it("refuses calls past maxCallsPerConnection with RESOURCE_EXHAUSTED; other connections go on", async () => {
    const { server, backend } = await serve({ limits: { maxCallsPerConnection: 2 } });
    backend.latencyMs = 500;
    const session = await h2(server);
    const slow = [0, 1].map(() => exchange(session, PATH.readAt, GRPC, envelope(readAt(16))));
    await waitFor(() => server.callsInFlight === 2, "two calls to run");
    const third = await exchange(session, PATH.readAt, GRPC, envelope(readAt(16)));
    expect(grpcStatus(third)).toBe(8); // RESOURCE_EXHAUSTED
    expect(third.trailers[OVERLOADED_HEADER] ?? third.headers[OVERLOADED_HEADER]).toBe("1");
    const other = await h2(server);
    expect(grpcStatus(await exchange(other, PATH.readAt, GRPC, envelope(readAt(16))))).toBe(0);
    for (const answer of await Promise.all(slow)) expect(grpcStatus(answer)).toBe(0);
    await waitFor(() => server.callsInFlight === 0, "every call to end");
  });

  it("refuses calls past maxCalls, and the r3map client waits and sends them again", async () => {
    const { server, backend } = await serve({ limits: { maxCalls: 1 } });
    backend.latencyMs = 30;
    const data = patternBytes(64 * 1024, 9);
    const writer = await ConnectBackend.connect({ baseUrl: server.baseUrl });
    cleanups.push(() => writer.close());
    await writer.writeAt(data, 0);
    const client = await ConnectBackend.connect({ baseUrl: server.baseUrl, retries: 0 });
    cleanups.push(() => client.close());
    const reads = Array.from({ length: 4 }, async () => {
      const back = new Uint8Array(data.length);
      await client.readAt(back, 0);
      return Buffer.compare(back, data);
    });
    expect(await Promise.all(reads)).toEqual([0, 0, 0, 0]);
  });

  it("holds a ReadAt's answer in the byte budget until its stream closes, refusing more meanwhile", async () => {
    const { server } = await serve({ limits: { maxBytesInFlight: 4 * MiB } });
    const session = await h2(server);
    // 2 MiB, counted three times (data, message, envelope): the budget is spent until the answer is read.
    const held = unread(session, PATH.readAt, GRPC, envelope(readAt(2 * MiB)));
    await waitFor(() => server.bytesInFlight >= 4 * MiB, "the answer to be held");
    const refused = await exchange(session, PATH.readAt, GRPC, envelope(readAt(MiB)));
    expect(grpcStatus(refused)).toBe(8);
    expect(decodeURIComponent(String(refused.trailers["grpc-message"]))).toMatch(
      /ReadAt: the server holds .* bytes for calls in flight/,
    );
    // Calls without data still run.
    expect(grpcStatus(await exchange(session, PATH.readAt, GRPC, envelope(readAt(16))))).toBe(0);
    held.resume();
    await new Promise((resolve) => held.on("close", resolve));
    await waitFor(() => server.bytesInFlight === 0, "the budget to be given back");
    expect(grpcStatus(await exchange(session, PATH.readAt, GRPC, envelope(readAt(MiB))))).toBe(0);
  });

  it("bounds ReadStream by its pieces", async () => {
    const { server } = await serve({ limits: { maxBytesInFlight: 4 * MiB } });
    const session = await h2(server);
    const held = unread(session, PATH.readStream, GRPC, envelope(readStream(64 * MiB, 2 * MiB)));
    await waitFor(() => server.bytesInFlight >= 4 * MiB, "two pieces to be held");
    const refused = await exchange(session, PATH.readStream, GRPC, envelope(readStream(MiB)));
    expect(grpcStatus(refused)).toBe(8);
    held.close();
    await waitFor(() => server.bytesInFlight === 0, "the budget to be given back");
  });
});

describe("a client that stalls", () => {
  it("loses its connection when it does not read an answer, and the budget is given back", async () => {
    const { server } = await serve({ stallTimeoutMs: 300 });
    const session = await h2(server);
    const closed = new Promise((resolve) => session.once("close", resolve));
    unread(session, PATH.readAt, GRPC, envelope(readAt(16 * MiB)));
    await waitFor(() => server.bytesInFlight > 0, "the answer to be held");
    await closed;
    await waitFor(() => server.bytesInFlight === 0 && server.callsInFlight === 0, "the call to be released");
  });

  it("loses its connection when its request stops arriving", async () => {
    const { server, backend } = await serve({ stallTimeoutMs: 300 });
    const session = await h2(server);
    const closed = new Promise((resolve) => session.once("close", resolve));
    const stream = session.request({ ":method": "POST", ":path": PATH.writeAt, ...GRPC });
    stream.on("error", () => {});
    const announced = Buffer.alloc(5);
    announced.writeUInt32BE(16 * MiB, 1);
    stream.write(Buffer.concat([announced, Buffer.from([0x0a])])); // 16 MiB announced, 1 byte sent
    await closed;
    expect(backend.writes.length).toBe(0);
    await waitFor(() => server.callsInFlight === 0, "the call to be released");
  });

  it("keeps a connection whose call waits for a slow backend", async () => {
    const { server, backend } = await serve({ stallTimeoutMs: 200 });
    backend.latencyMs = 1_000;
    const session = await h2(server);
    expect(grpcStatus(await exchange(session, PATH.readAt, GRPC, envelope(readAt(16))))).toBe(0);
    expect(server.openSessions).toBe(1);
  });
});
