import * as net from "node:net";
import { type Backend, MemoryBackend } from "@r3map/core";
import { ConnectBackend, ConnectServer } from "@r3map/transport-connect";
import { type Benchmark, type BenchResult, mibPerSecond, result } from "../harness.js";

/** Bytes moved per measured run. */
const total = 64 * 1024 * 1024;
/** Unary calls in flight at once (the client's limiter bounds it too). */
const inFlight = 16;
const sessionsMany = 4;
const runs = 3;

/**
 * The baseline: the same bytes, read from the same backend in the same piece
 * size, sent over a plain loopback TCP socket and received into the target.
 * The client asks with one 8-byte request; the server streams the range.
 */
async function rawSocketServer(
  backend: Backend,
  piece: number,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.once("data", async () => {
      const buffer = new Uint8Array(piece);
      for (let offset = 0; offset < total; offset += piece) {
        await backend.readAt(buffer, offset);
        // Copy like a real server would (the buffer is reused), then honour backpressure.
        if (!socket.write(Buffer.from(buffer))) await new Promise((resolve) => socket.once("drain", resolve));
      }
      socket.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return { port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

function rawSocketRead(port: number, target: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    let received = 0;
    const socket = net.connect({ port, host: "127.0.0.1", noDelay: true }, () =>
      socket.write(Buffer.alloc(8)),
    );
    socket.on("data", (chunk: Buffer) => {
      target.set(chunk, received);
      received += chunk.length;
    });
    socket.once("end", () =>
      received === total ? resolve() : reject(new Error(`raw socket got ${received} bytes`)),
    );
    socket.once("error", reject);
  });
}

/** Reads [0, total) with `inFlight` unary ReadAt calls of `piece` bytes in flight. */
async function unaryRead(client: Backend, target: Uint8Array, piece: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let offset = next; offset < total; offset = next) {
      next += piece;
      await client.readAt(target.subarray(offset, offset + piece), offset);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

/** Reads [0, total) as `streams` server streams of `piece`-sized messages, one range each. */
async function streamRead(
  client: ConnectBackend,
  target: Uint8Array,
  piece: number,
  streams: number,
): Promise<void> {
  const share = total / streams;
  await Promise.all(
    Array.from({ length: streams }, async (_, i) => {
      for await (const { offset, data } of client.readStream(i * share, share, { chunkSize: piece })) {
        target.set(data, offset);
      }
    }),
  );
}

async function best(operation: () => Promise<void>): Promise<number> {
  let fastest = Number.POSITIVE_INFINITY;
  for (let run = 0; run < runs; run++) {
    const start = performance.now();
    await operation();
    fastest = Math.min(fastest, performance.now() - start);
  }
  return mibPerSecond(total, fastest);
}

type NbdModule = typeof import("@r3map/nbd");

/** Our NBD transport on the same backend, when the package loads (it is optional here). */
async function nbdRate(backend: Backend, target: Uint8Array, piece: number, log: (m: string) => void) {
  let nbd: NbdModule;
  try {
    nbd = await import("@r3map/nbd");
  } catch (error) {
    log(`NBD comparison skipped: @r3map/nbd did not load (${String(error)})`);
    return undefined;
  }
  const server = new nbd.NbdServer({ exports: [{ name: "", backend }] });
  try {
    const address = await server.listen({ port: 0 });
    const port = typeof address === "string" ? 0 : address.port;
    const client = await nbd.NbdClient.connect({ host: "127.0.0.1", port });
    try {
      return await best(() => unaryRead(client, target, piece));
    } finally {
      await client.close();
    }
  } finally {
    await server.close();
  }
}

const benchmark: Benchmark = {
  name: "connect",
  description:
    "Connect/gRPC read throughput (unary vs streaming, 1 vs 4 HTTP/2 sessions) and NBD vs a raw loopback socket",
  async run({ log }) {
    const backend = new MemoryBackend(total);
    const fill = new Uint8Array(total);
    for (let i = 0; i < total; i += 4096) fill[i] = i & 0xff;
    await backend.writeAt(fill, 0);
    const target = new Uint8Array(total);
    const server = await ConnectServer.listen({ backend });
    const rows: BenchResult[] = [];
    try {
      const one = await ConnectBackend.connect({ baseUrl: server.baseUrl, sessions: 1 });
      const many = await ConnectBackend.connect({ baseUrl: server.baseUrl, sessions: sessionsMany });
      // The Connect protocol (not gRPC) on the same HTTP/2 stack, for comparison.
      const connectProtocol = await ConnectBackend.connect({ baseUrl: server.baseUrl, protocol: "connect" });
      try {
        for (const piece of [64 * 1024, 1024 * 1024]) {
          const label = piece >= 1024 * 1024 ? "1 MiB" : "64 KiB";
          const raw = await rawSocketServer(backend, piece);
          let baseline: number;
          try {
            baseline = await best(() => rawSocketRead(raw.port, target));
          } finally {
            await raw.close();
          }
          const baselineName = `raw loopback TCP socket, ${label} writes`;
          // gRPC unless named otherwise.
          const cases: Array<[string, () => Promise<void>]> = [
            [`unary ReadAt, 1 session, ${inFlight} in flight`, () => unaryRead(one, target, piece)],
            [
              `unary ReadAt, ${sessionsMany} sessions, ${inFlight} in flight`,
              () => unaryRead(many, target, piece),
            ],
            [
              `unary ReadAt (Connect protocol), 1 session, ${inFlight} in flight`,
              () => unaryRead(connectProtocol, target, piece),
            ],
            ["ReadStream, 1 session", () => streamRead(one, target, piece, 1)],
            [
              `ReadStream, ${sessionsMany} sessions x 1 stream`,
              () => streamRead(many, target, piece, sessionsMany),
            ],
          ];
          for (const [name, operation] of cases) {
            const rate = await best(operation);
            log(`${label} ${name}: ${rate.toFixed(0)} MiB/s (raw socket ${baseline.toFixed(0)} MiB/s)`);
            rows.push(result(`connect ${name}, ${label} pieces`, rate, "MiB/s", baselineName, baseline));
          }
          const nbd = await nbdRate(backend, target, piece, log);
          if (nbd !== undefined) {
            log(`${label} NBD: ${nbd.toFixed(0)} MiB/s`);
            rows.push(
              result(
                `nbd READ, 1 connection, ${inFlight} in flight, ${label} pieces`,
                nbd,
                "MiB/s",
                baselineName,
                baseline,
              ),
            );
          }
        }
      } finally {
        await one.close();
        await many.close();
        await connectProtocol.close();
      }
    } finally {
      await server.close();
      await backend.close();
    }
    return rows;
  },
};

export default benchmark;
