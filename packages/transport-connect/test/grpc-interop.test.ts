import { MemoryBackend, TrackingStage } from "@r3map/core";
import { InstrumentedBackend, patternBytes } from "@r3map/core/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectServer, type Seeder } from "../src/index.js";
import { createTestCertificates, type TestCertificates } from "./certificates.js";
import { bearer, failure, grpc, loadGrpcServices, unary } from "./grpc-client.js";

const { Backend, Seeder: SeederService } = loadGrpcServices();
const SIZE = 1024 * 1024;
const TOKEN = "interop-token";

describe("a standard gRPC client (@grpc/grpc-js + proto-loader) against our server", () => {
  let server: ConnectServer;
  let backend: InstrumentedBackend;
  let client: InstanceType<typeof Backend>;

  beforeAll(async () => {
    backend = new InstrumentedBackend(new MemoryBackend(SIZE));
    server = await ConnectServer.listen({ backend, tokens: [TOKEN] });
    client = new Backend(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    client?.close();
    await server?.close();
  });

  it("writes, reads back and syncs through the original Backend service", async () => {
    const data = patternBytes(100_000, 5);
    const written = await unary<{ Length: number }>(
      client,
      "WriteAt",
      { Off: 4096, P: Buffer.from(data) },
      bearer(TOKEN),
    );
    expect(written.Length).toBe(data.length);
    const reply = await unary<{ N: number; P: Buffer }>(
      client,
      "ReadAt",
      { Length: data.length, Off: 4096 },
      bearer(TOKEN),
    );
    expect(reply.N).toBe(data.length);
    expect(Buffer.compare(reply.P, data)).toBe(0);
    // The server's backend really holds the bytes.
    const direct = new Uint8Array(data.length);
    await backend.readAt(direct, 4096);
    expect(Buffer.compare(direct, data)).toBe(0);
    const syncs = backend.syncs;
    await unary(client, "Sync", {}, bearer(TOKEN));
    expect(backend.syncs).toBe(syncs + 1);
  });

  it("rejects calls without a valid token with UNAUTHENTICATED and writes nothing", async () => {
    const writes = backend.writes.length;
    const missing = await failure(unary(client, "WriteAt", { Off: 0, P: Buffer.alloc(4096, 0xee) }));
    expect(missing.code).toBe(grpc.status.UNAUTHENTICATED);
    const wrong = await failure(
      unary(client, "WriteAt", { Off: 0, P: Buffer.alloc(4096, 0xee) }, bearer("wrong")),
    );
    expect(wrong.code).toBe(grpc.status.UNAUTHENTICATED);
    const read = await failure(unary(client, "ReadAt", { Length: 16, Off: 0 }, bearer(`${TOKEN}x`)));
    expect(read.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(backend.writes.length).toBe(writes);
    const head = new Uint8Array(4096);
    await backend.readAt(head, 0);
    expect(head.every((byte) => byte === 0)).toBe(true);
  });

  it("answers out-of-range and oversized requests with typed codes and keeps serving", async () => {
    const past = await failure(unary(client, "ReadAt", { Length: 16, Off: SIZE - 8 }, bearer(TOKEN)));
    expect(past.code).toBe(grpc.status.OUT_OF_RANGE);
    expect(past.metadata.get("r3map-error-code")).toEqual(["ERR_OUT_OF_RANGE"]);
    const negative = await failure(unary(client, "ReadAt", { Length: 16, Off: -1 }, bearer(TOKEN)));
    expect(negative.code).toBe(grpc.status.INVALID_ARGUMENT);
    const oversized = await failure(
      unary(client, "ReadAt", { Length: 33 * 1024 * 1024, Off: 0 }, bearer(TOKEN)),
    );
    expect(oversized.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(oversized.details).toMatch(/per-call limit/);
    const writePast = await failure(
      unary(client, "WriteAt", { Off: SIZE, P: Buffer.alloc(1) }, bearer(TOKEN)),
    );
    expect(writePast.code).toBe(grpc.status.OUT_OF_RANGE);
    const ok = await unary<{ N: number }>(client, "ReadAt", { Length: 8, Off: 0 }, bearer(TOKEN));
    expect(ok.N).toBe(8);
  });
});

describe("the 32 MiB cap applies to WriteAt too (the original did not cap it)", () => {
  it("refuses a WriteAt above a configured cap before touching the backend", async () => {
    const backend = new InstrumentedBackend(new MemoryBackend(SIZE));
    const server = await ConnectServer.listen({ backend, maxRequestBytes: 64 * 1024 });
    const client = new Backend(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure(), {
      "grpc.max_send_message_length": -1,
    });
    try {
      const error = await failure(unary(client, "WriteAt", { Off: 0, P: Buffer.alloc(64 * 1024 + 1, 1) }));
      expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
      // Far above the cap: refused by the message size limit, unread.
      const huge = await failure(unary(client, "WriteAt", { Off: 0, P: Buffer.alloc(512 * 1024, 1) }));
      expect([grpc.status.RESOURCE_EXHAUSTED, grpc.status.INVALID_ARGUMENT]).toContain(huge.code);
      expect(backend.writes).toEqual([]);
      const fits = await unary<{ Length: number }>(client, "WriteAt", {
        Off: 0,
        P: Buffer.alloc(64 * 1024, 1),
      });
      expect(fits.Length).toBe(64 * 1024);
    } finally {
      client.close();
      await server.close();
    }
  });
});

describe("mutual TLS with a standard gRPC client", () => {
  let certificates: TestCertificates;
  let server: ConnectServer;
  let backend: InstrumentedBackend;

  beforeAll(async () => {
    certificates = createTestCertificates();
    backend = new InstrumentedBackend(new MemoryBackend(SIZE));
    server = await ConnectServer.listen({
      backend,
      tls: { cert: certificates.serverCert, key: certificates.serverKey, ca: certificates.ca },
    });
  });
  afterAll(async () => {
    await server?.close();
    certificates?.remove();
  });

  it("serves a client with a certificate the CA signed", async () => {
    const client = new Backend(
      `localhost:${server.port}`,
      grpc.credentials.createSsl(certificates.ca, certificates.clientKey, certificates.clientCert),
    );
    try {
      await unary(client, "WriteAt", { Off: 0, P: Buffer.from("hello over mTLS") });
      const reply = await unary<{ P: Buffer }>(client, "ReadAt", { Length: 15, Off: 0 });
      expect(reply.P.toString()).toBe("hello over mTLS");
    } finally {
      client.close();
    }
  });

  it("refuses clients without a certificate or with a foreign one, writing nothing", async () => {
    const writes = backend.writes.length;
    for (const credentials of [
      grpc.credentials.createSsl(certificates.ca),
      grpc.credentials.createSsl(certificates.ca, certificates.rogueKey, certificates.rogueCert),
    ]) {
      const client = new Backend(`localhost:${server.port}`, credentials);
      try {
        const error = await failure(
          unary(client, "WriteAt", { Off: 8192, P: Buffer.alloc(16, 0xff) }, undefined, 5000),
        );
        expect(error.code).toBe(grpc.status.UNAVAILABLE);
      } finally {
        client.close();
      }
    }
    expect(backend.writes.length).toBe(writes);
  });
});

describe("the original Seeder service with a standard gRPC client", () => {
  it("tracks, reads and reports chunk-aligned dirty offsets", async () => {
    const chunkSize = 4096;
    const tracking = new TrackingStage(new MemoryBackend(SIZE), chunkSize);
    let closed = false;
    const seeder: Seeder = {
      backend: tracking,
      chunkSize,
      track: () => tracking.track(),
      sync: () => tracking.takeDirty().map((chunk) => chunk * chunkSize),
      finalize: () => tracking.stopTracking().map((chunk) => chunk * chunkSize),
      close: () => {
        closed = true;
      },
    };
    const server = await ConnectServer.listen({ seeder });
    const client = new SeederService(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    try {
      await unary(client, "Track", {});
      await tracking.writeAt(patternBytes(10, 1), 3 * chunkSize + 100);
      await tracking.writeAt(patternBytes(chunkSize, 2), 7 * chunkSize + 1);
      const read = await unary<{ N: number; P: Buffer }>(client, "ReadAt", {
        Length: 10,
        Off: 3 * chunkSize + 100,
      });
      expect(Buffer.compare(read.P, patternBytes(10, 1))).toBe(0);
      const synced = await unary<{ DirtyOffsets: number[] }>(client, "Sync", {});
      expect([...synced.DirtyOffsets].sort((a, b) => a - b)).toEqual([3, 7, 8].map((c) => c * chunkSize));
      expect(tracking.tracking).toBe(false);
      await unary(client, "Close", {});
      expect(closed).toBe(true);
    } finally {
      // The service's own Close RPC shadows grpc.Client#close on the generated client.
      grpc.Client.prototype.close.call(client);
      await server.close();
    }
  });
});
