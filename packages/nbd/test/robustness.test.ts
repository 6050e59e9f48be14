import * as net from "node:net";
import { isR3mapError, MemoryBackend } from "@r3map/core";
import { InstrumentedBackend, patternBytes, waitFor } from "@r3map/core/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { connectNbd, listNbdExports, NbdServer } from "../src/index.js";
import { CMD, IHAVEOPT, OPT, REP, REPLY_TYPE } from "../src/protocol.js";
import { RawClient } from "./raw-client.js";

const MiB = 1024 * 1024;
const EINVAL = 22;
const ENOSPC = 28;
const EPERM = 1;
const EIO = 5;

let backend: InstrumentedBackend;
let server: NbdServer;
let port: number;
const raws: RawClient[] = [];

beforeAll(async () => {
  backend = new InstrumentedBackend(new MemoryBackend(16 * MiB));
  server = new NbdServer({
    exports: [
      { name: "disk", backend },
      { name: "ro", backend: new MemoryBackend(MiB), readOnly: true },
      { name: "aligned", backend: new MemoryBackend(MiB), minimumBlockSize: 4096 },
    ],
    maxInFlight: 8,
    maxBufferedBytes: 8 * MiB,
    handshakeTimeoutMs: 2_000,
  });
  port = ((await server.listen({ port: 0 })) as net.AddressInfo).port;
});
afterEach(() => {
  for (const raw of raws.splice(0)) raw.socket.destroy();
  backend.readGate.open();
  backend.writeGate.open();
  backend.failReads = 0;
  backend.failWrites = 0;
});
afterAll(() => server.close());

async function raw(structured = false, name = "disk"): Promise<RawClient> {
  const client = await RawClient.open(port, name, structured);
  raws.push(client);
  return client;
}

/** The server still works for a well-behaved client. */
async function stillServes(): Promise<void> {
  const client = await connectNbd({ port, export: "disk" });
  try {
    const data = patternBytes(4096, 77);
    await client.writeAt(data, 8 * MiB);
    const back = new Uint8Array(4096);
    await client.readAt(back, 8 * MiB);
    expect(Buffer.compare(back, data)).toBe(0);
  } finally {
    await client.close();
  }
}

async function noConnectionsLeft(): Promise<void> {
  await waitFor(() => server.connectionCount === 0, "the server to drop every connection");
}

describe("malformed negotiation", () => {
  it("drops a client that sends unknown handshake flags", async () => {
    const client = await RawClient.connect(port);
    raws.push(client);
    await client.reader.take(18);
    client.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    await client.closed();
    await stillServes();
  });

  it("drops a client with a bad option magic", async () => {
    const client = await RawClient.connect(port);
    raws.push(client);
    await client.reader.take(18);
    client.socket.write(Buffer.from([0, 0, 0, 1]));
    client.socket.write(Buffer.alloc(16, 0x41));
    await client.closed();
    await stillServes();
  });

  it("drops a client announcing an oversized option without waiting for its payload", async () => {
    const client = await RawClient.connect(port);
    raws.push(client);
    await client.reader.take(18);
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(IHAVEOPT, 0);
    header.writeUInt32BE(OPT.GO, 8);
    header.writeUInt32BE(0xffffffff, 12);
    client.socket.write(Buffer.concat([Buffer.from([0, 0, 0, 1]), header]));
    await client.closed();
  });

  it("answers unknown and malformed options with errors and keeps negotiating", async () => {
    const client = await RawClient.connect(port);
    raws.push(client);
    await client.reader.take(18);
    client.socket.write(Buffer.from([0, 0, 0, 1]));
    const option = (id: number, data: Buffer) => {
      const header = Buffer.alloc(16);
      header.writeBigUInt64BE(IHAVEOPT, 0);
      header.writeUInt32BE(id, 8);
      header.writeUInt32BE(data.length, 12);
      client.socket.write(Buffer.concat([header, data]));
    };
    option(99, Buffer.from("junk"));
    expect((await client.optionReply()).type).toBe(REP.ERR_UNSUP);
    option(OPT.GO, Buffer.from([0, 0, 0, 200, 1]));
    expect((await client.optionReply()).type).toBe(REP.ERR_INVALID);
    option(OPT.LIST, Buffer.from("x"));
    expect((await client.optionReply()).type).toBe(REP.ERR_INVALID);
    const name = Buffer.from("nope");
    const go = Buffer.alloc(4 + name.length + 2);
    go.writeUInt32BE(name.length, 0);
    name.copy(go, 4);
    option(OPT.GO, go);
    const unknown = await client.optionReply();
    expect(unknown.type).toBe(REP.ERR_UNKNOWN);
    expect(unknown.data.toString()).toMatch(/unknown export "nope"/);
    option(OPT.SET_META_CONTEXT, Buffer.alloc(8));
    expect((await client.optionReply()).type).toBe(REP.ERR_INVALID); // structured replies not negotiated
    option(OPT.STARTTLS, Buffer.alloc(0));
    expect((await client.optionReply()).type).toBe(REP.ERR_POLICY); // no certificate configured
    option(OPT.ABORT, Buffer.alloc(0));
    expect((await client.optionReply()).type).toBe(REP.ACK);
    await client.closed();
  });

  it("drops clients that connect and never negotiate, after the handshake timeout", async () => {
    const idle = await RawClient.connect(port);
    raws.push(idle);
    await idle.closed();
  });

  it("refuses GO without a block-size request on an export that needs alignment", async () => {
    const client = await RawClient.connect(port);
    raws.push(client);
    await client.reader.take(18);
    client.socket.write(Buffer.from([0, 0, 0, 1]));
    const name = Buffer.from("aligned");
    const go = Buffer.alloc(16 + 4 + name.length + 2);
    go.writeBigUInt64BE(IHAVEOPT, 0);
    go.writeUInt32BE(OPT.GO, 8);
    go.writeUInt32BE(4 + name.length + 2, 12);
    go.writeUInt32BE(name.length, 16);
    name.copy(go, 20);
    client.socket.write(go);
    expect((await client.optionReply()).type).toBe(REP.ERR_BLOCK_SIZE_REQD);
  });
});

describe("invalid requests", () => {
  it("answers out-of-range, oversized and unknown requests with NBD errors and keeps the connection", async () => {
    const client = await raw();
    client.send(CMD.READ, 16 * MiB - 10, 20, 1);
    expect(await client.simpleReply()).toMatchObject({ error: EINVAL, cookie: 1 });
    client.send(CMD.READ, 0, 33 * MiB, 2);
    expect(await client.simpleReply()).toMatchObject({ error: EINVAL, cookie: 2 });
    client.send(77, 0, 0, 3);
    expect(await client.simpleReply()).toMatchObject({ error: EINVAL, cookie: 3 });
    client.send(CMD.READ, 0, 512, 4, 0x8000);
    expect(await client.simpleReply()).toMatchObject({ error: EINVAL, cookie: 4 });
    // A write past the end: its payload is skipped (never buffered or applied) and ENOSPC returned.
    const writesBefore = backend.writes.length;
    client.send(CMD.WRITE, 16 * MiB - 512, 4096, 5, 0, new Uint8Array(4096).fill(9));
    expect(await client.simpleReply()).toMatchObject({ error: ENOSPC, cookie: 5 });
    // An oversized write (40 MiB > 32 MiB maximum) is skipped in a stream, then refused.
    client.send(CMD.WRITE, 0, 40 * MiB, 6, 0, new Uint8Array(40 * MiB).fill(3));
    expect(await client.simpleReply()).toMatchObject({ error: EINVAL, cookie: 6 });
    expect(backend.writes.length).toBe(writesBefore);
    // BLOCK_STATUS without a selected meta context.
    client.send(CMD.BLOCK_STATUS, 0, 4096, 7);
    expect(await client.simpleReply()).toMatchObject({ error: EINVAL, cookie: 7 });
    client.send(CMD.READ, 0, 512, 8);
    const ok = await client.simpleReply(512);
    expect(ok).toMatchObject({ error: 0, cookie: 8 });
    const first = new Uint8Array(512);
    await backend.readAt(first, 0);
    expect(Buffer.compare(ok.data, first)).toBe(0);
  });

  it("refuses writes on read-only exports with EPERM and misaligned requests with EINVAL", async () => {
    const ro = await raw(false, "ro");
    ro.send(CMD.WRITE, 0, 512, 1, 0, new Uint8Array(512));
    expect(await ro.simpleReply()).toMatchObject({ error: EPERM });
    ro.send(CMD.WRITE_ZEROES, 0, 512, 2);
    expect(await ro.simpleReply()).toMatchObject({ error: EPERM });
    const aligned = await RawClient.open(port, "aligned");
    raws.push(aligned);
    aligned.send(CMD.READ, 512, 4096, 3);
    expect(await aligned.simpleReply()).toMatchObject({ error: EINVAL });
    aligned.send(CMD.READ, 4096, 4096, 4);
    expect((await aligned.simpleReply(4096)).error).toBe(0);
  });

  it("turns a backend failure into an EIO reply (structured, with a message) without dropping the connection", async () => {
    const client = await raw(true);
    backend.failReads = 1;
    client.send(CMD.READ, 0, 4096, 1);
    const error = await client.chunk();
    expect(error.type).toBe(REPLY_TYPE.ERROR);
    expect(error.payload.readUInt32BE(0)).toBe(EIO);
    expect(error.payload.toString("utf8", 6)).toMatch(/injected read failure/);
    client.send(CMD.READ, 0, 4096, 2);
    const data = await client.chunk();
    expect(data.type).toBe(REPLY_TYPE.OFFSET_DATA);
    expect(data.payload.length).toBe(8 + 4096);

    const typed = await connectNbd({ port, export: "disk" });
    backend.failWrites = 1;
    const failure = await typed.writeAt(new Uint8Array(512), 0).catch((e: unknown) => e);
    expect(isR3mapError(failure, "ERR_REMOTE_FAILED")).toBe(true);
    expect((failure as { errno?: string }).errno).toBe("EIO");
    await typed.close();
  });
});

describe("broken transmission", () => {
  it("drops a connection that sends a bad request magic", async () => {
    const client = await raw();
    client.socket.write(Buffer.alloc(28, 0x55));
    await client.closed();
    await stillServes();
  });

  it("never applies a write whose payload was truncated by a vanishing client", async () => {
    const client = await raw();
    const writesBefore = backend.writes.length;
    const marker = new Uint8Array(MiB).fill(0xee);
    client.send(CMD.WRITE, 0, MiB, 1, 0, marker.subarray(0, MiB / 2));
    await waitFor(() => server.connectionCount >= 1, "the connection to be served");
    client.socket.destroy();
    await noConnectionsLeft();
    expect(backend.writes.length).toBe(writesBefore);
    const head = new Uint8Array(16);
    await backend.readAt(head, 0);
    expect(head.some((b) => b === 0xee)).toBe(false);
    await stillServes();
  });

  it("finishes cleanly when a client vanishes with reads in flight", async () => {
    backend.readGate.close();
    const client = await raw();
    for (let i = 0; i < 8; i++) client.send(CMD.READ, i * MiB, MiB, i + 1);
    await waitFor(() => backend.readGate.waiting > 0, "reads to reach the backend");
    client.socket.destroy(); // with the reads held in flight
    backend.readGate.open();
    await noConnectionsLeft();
    await stillServes();
  });

  it("truncated request header: the connection ends and nothing runs", async () => {
    const client = await raw();
    const readsBefore = backend.reads.length;
    client.socket.end(Buffer.from([0x25, 0x60, 0x95, 0x13, 0, 0, 0, 0]));
    await client.closed();
    await noConnectionsLeft();
    expect(backend.reads.length).toBe(readsBefore);
  });
});

describe("concurrency and limits", () => {
  it("serves 64 concurrent clients, each with its own data, and leaks no sockets", async () => {
    const clients = await Promise.all(Array.from({ length: 64 }, () => connectNbd({ port, export: "disk" })));
    expect(server.connectionCount).toBe(64);
    await Promise.all(
      clients.map(async (client, i) => {
        const data = patternBytes(64 * 1024, 1000 + i);
        await client.writeAt(data, i * 128 * 1024);
        const back = new Uint8Array(data.length);
        await client.readAt(back, i * 128 * 1024);
        expect(Buffer.compare(back, data)).toBe(0);
      }),
    );
    await Promise.all(clients.map((client) => client.close()));
    await noConnectionsLeft();
  });

  it("answers many pipelined requests out of order", async () => {
    const client = await raw(true);
    // Cookie 1 is slow (a large read), cookie 2 fast: replies may come in any order, all must come.
    for (let i = 1; i <= 32; i++) client.send(CMD.READ, (i % 16) * 4096, i === 1 ? 8 * MiB : 4096, i);
    const seen = new Set<number>();
    for (let i = 0; i < 32; i++) seen.add((await client.chunk()).cookie);
    expect(seen.size).toBe(32);
  });

  it("stops reading a client that does not read its replies (bounded buffering)", async () => {
    const client = await raw();
    const readsBefore = backend.reads.length;
    client.socket.pause();
    const header = Buffer.alloc(28 * 400);
    for (let i = 0; i < 400; i++) {
      header.writeUInt32BE(0x25609513, i * 28);
      header.writeUInt32BE(i + 1, i * 28 + 12);
      header.writeUInt32BE(MiB, i * 28 + 24);
    }
    client.socket.write(header);
    await waitFor(() => backend.reads.length - readsBefore >= 8, "the first reads");
    // Observe for a bounded window: with 8 MiB of reply buffering allowed, the
    // server must stay far below 400 reads (only the kernel's socket buffers add more).
    // The window is the check itself (nothing to wait for: the claim is that nothing
    // more happens); a slower machine only reads fewer within it.
    const deadline = Date.now() + 500;
    while (Date.now() < deadline) {
      expect(backend.reads.length - readsBefore).toBeLessThan(64);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // Once the client reads, every reply arrives.
    client.socket.resume();
    for (let i = 0; i < 400; i++) expect((await client.simpleReply(MiB)).error).toBe(0);
  });

  it("refuses connections beyond maxConnections with a message, during negotiation", async () => {
    const small = new NbdServer({
      exports: [{ name: "", backend: new MemoryBackend(MiB) }],
      maxConnections: 1,
    });
    const smallPort = ((await small.listen({ port: 0 })) as net.AddressInfo).port;
    const first = await connectNbd({ port: smallPort });
    const error = await connectNbd({ port: smallPort, retry: { attempts: 0 } }).catch((e: unknown) => e);
    expect(isR3mapError(error)).toBe(true);
    expect(String(error)).toMatch(/limit of 1 connections/);
    await first.close();
    await small.close();
  });
});

describe("client resilience", () => {
  it("times out a request with ERR_TIMEOUT and keeps working afterwards", async () => {
    const client = await connectNbd({ port, export: "disk", timeoutMs: 100 });
    backend.readGate.close(); // the server never answers while the 100 ms pass
    const error = await client.readAt(new Uint8Array(4096), 0).catch((e: unknown) => e);
    expect(isR3mapError(error, "ERR_TIMEOUT")).toBe(true);
    backend.readGate.open();
    await client.readAt(new Uint8Array(4096), 0);
    await client.close();
  });

  it("reports an unreachable server with ERR_REMOTE_UNREACHABLE", async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const deadPort = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const error = await connectNbd({ port: deadPort }).catch((e: unknown) => e);
    expect(isR3mapError(error, "ERR_REMOTE_UNREACHABLE")).toBe(true);
  });

  it("reconnects after the server restarts and retries the request", async () => {
    const memory = new MemoryBackend(MiB);
    let first = new NbdServer({ exports: [{ name: "", backend: memory }] });
    const restartPort = ((await first.listen({ port: 0 })) as net.AddressInfo).port;
    const client = await connectNbd({ port: restartPort, retry: { attempts: 5, delayMs: 50 } });
    await client.writeAt(patternBytes(4096, 5), 0);
    await first.close();
    first = new NbdServer({ exports: [{ name: "", backend: memory }] });
    await first.listen({ port: restartPort });
    const back = new Uint8Array(4096);
    await client.readAt(back, 0);
    expect(Buffer.compare(back, patternBytes(4096, 5))).toBe(0);
    await client.close();
    await first.close();
  });
});

describe("client against our server", () => {
  it("lists exports, reports an unknown export, and refuses misaligned requests locally", async () => {
    const names = (await listNbdExports({ port })).map((e) => e.name).sort();
    expect(names).toEqual(["aligned", "disk", "ro"]);
    const error = await connectNbd({ port, export: "missing" }).catch((e: unknown) => e);
    expect(isR3mapError(error, "ERR_INVALID_ARGUMENT")).toBe(true);
    expect(String(error)).toMatch(/unknown export "missing"/);
    const aligned = await connectNbd({ port, export: "aligned" });
    expect(aligned.info.minimumBlockSize).toBe(4096);
    const misaligned = await aligned.readAt(new Uint8Array(512), 0).catch((e: unknown) => e);
    expect(isR3mapError(misaligned, "ERR_MISALIGNED")).toBe(true);
    await aligned.readAt(new Uint8Array(4096), 4096);
    await aligned.close();
    const ro = await connectNbd({ port, export: "ro" });
    expect(ro.readOnly).toBe(true);
    expect(ro.trim).toBeUndefined();
    await expect(ro.writeAt(new Uint8Array(1), 0)).rejects.toMatchObject({ code: "ERR_READ_ONLY" });
    await ro.close();
  });

  it("uses one connection when the export does not allow multi-conn, and simple replies when asked", async () => {
    const single = new NbdServer({
      exports: [{ name: "", backend: new MemoryBackend(4 * MiB), multiConn: false }],
    });
    const singlePort = ((await single.listen({ port: 0 })) as net.AddressInfo).port;
    const client = await connectNbd({ port: singlePort, connections: 4, structuredReplies: false });
    expect(client.connectionCount).toBe(1);
    expect(client.info.structured).toBe(false);
    const data = patternBytes(3 * MiB, 8);
    await client.writeAt(data, 0);
    const back = new Uint8Array(3 * MiB);
    await client.readAt(back, 0);
    expect(Buffer.compare(back, data)).toBe(0);
    await client.close();
    await single.close();
  });

  it("serves a stream handed to serve() (a proxy or socketpair end)", async () => {
    const memory = new MemoryBackend(MiB);
    const nbd = new NbdServer({ exports: [{ name: "", backend: memory }] });
    const plain = net.createServer((socket) => nbd.serve(socket));
    await new Promise<void>((resolve) => plain.listen(0, "127.0.0.1", resolve));
    const client = await connectNbd({ port: (plain.address() as net.AddressInfo).port });
    await client.writeAt(patternBytes(512, 4), 512);
    const back = new Uint8Array(512);
    await memory.readAt(back, 512);
    expect(Buffer.compare(back, patternBytes(512, 4))).toBe(0);
    await client.close();
    await nbd.close();
    await new Promise<void>((resolve) => plain.close(() => resolve()));
  });
});

describe("graceful shutdown", () => {
  it("finishes in-flight requests before closing", async () => {
    const slow = new InstrumentedBackend(new MemoryBackend(MiB));
    const shutting = new NbdServer({ exports: [{ name: "", backend: slow }] });
    const shutPort = ((await shutting.listen({ port: 0 })) as net.AddressInfo).port;
    const client = await connectNbd({ port: shutPort, retry: { attempts: 0 } });
    slow.writeGate.close();
    const data = patternBytes(4096, 3);
    const write = client.writeAt(data, 0);
    await waitFor(() => slow.writeGate.waiting === 1, "the write to reach the backend");
    const closing = shutting.close(); // with the write held in flight
    slow.writeGate.open();
    await closing;
    await write;
    const back = new Uint8Array(4096);
    await slow.readAt(back, 0);
    expect(Buffer.compare(back, data)).toBe(0);
    expect(shutting.connectionCount).toBe(0);
    await client.close();
  });
});
