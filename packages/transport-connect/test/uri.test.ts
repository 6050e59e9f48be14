import { MemoryBackend, openBackend, registeredBackendSchemes } from "@r3map/core";
import { patternBytes } from "@r3map/core/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectBackend, ConnectServer, clientOptionsFromUri } from "../src/index.js";
import { createTestCertificates, type TestCertificates } from "./certificates.js";

describe("r3map+h2c: and r3map+https: URIs", () => {
  let certificates: TestCertificates;
  let plain: ConnectServer;
  let secure: ConnectServer;

  beforeAll(async () => {
    certificates = createTestCertificates();
    plain = await ConnectServer.listen({ backend: new MemoryBackend(1 << 20), tokens: ["tok/en+="] });
    secure = await ConnectServer.listen({
      backend: new MemoryBackend(1 << 20),
      tls: { cert: certificates.serverCert, key: certificates.serverKey, ca: certificates.ca },
    });
  });
  afterAll(async () => {
    await plain?.close();
    await secure?.close();
    certificates?.remove();
  });

  it("registers both schemes on import", () => {
    expect(registeredBackendSchemes()).toEqual(expect.arrayContaining(["r3map+h2c", "r3map+https"]));
  });

  it("opens an h2c backend with a token, sessions and the Connect protocol", async () => {
    const uri = `${plain.url}?token=${encodeURIComponent("tok/en+=")}&sessions=3&protocol=connect`;
    const backend = await openBackend(uri);
    try {
      expect(backend).toBeInstanceOf(ConnectBackend);
      expect(backend.size).toBe(1 << 20);
      const data = patternBytes(70_000, 4);
      await backend.writeAt(data, 1234);
      const back = new Uint8Array(data.length);
      await backend.readAt(back, 1234);
      expect(Buffer.compare(back, data)).toBe(0);
    } finally {
      await backend.close();
    }
  });

  it("opens a mutual-TLS backend from certificate paths", async () => {
    const { ca, clientCert, clientKey } = certificates.paths;
    const backend = await openBackend(
      `${secure.url.replace("127.0.0.1", "localhost")}?ca=${ca}&cert=${clientCert}&key=${clientKey}`,
    );
    try {
      await backend.writeAt(new Uint8Array([1, 2, 3]), 0);
      const back = new Uint8Array(3);
      await backend.readAt(back, 0);
      expect([...back]).toEqual([1, 2, 3]);
    } finally {
      await backend.close();
    }
  });

  it("refuses a TLS client without a certificate", async () => {
    await expect(openBackend(`${secure.url}?ca=${certificates.paths.ca}`)).rejects.toMatchObject({
      code: "ERR_PERMISSION",
      message: expect.stringMatching(/TLS/),
    });
  });

  it("takes size (original servers), timeouts and caps from parameters", () => {
    const options = clientOptionsFromUri(
      "r3map+h2c://10.0.0.1:1337?size=1GiB&timeoutMs=500&concurrency=8&maxRequest=4MiB&protocol=grpc",
    );
    expect(options).toMatchObject({
      baseUrl: "http://10.0.0.1:1337",
      size: 1024 ** 3,
      timeoutMs: 500,
      maxConcurrency: 8,
      maxRequestBytes: 4 * 1024 * 1024,
      protocol: "grpc",
    });
  });

  it("explains bad URIs with typed errors", async () => {
    await expect(openBackend("r3map+h2c://127.0.0.1")).rejects.toMatchObject({
      code: "ERR_INVALID_ARGUMENT",
    });
    await expect(openBackend("r3map+h2c://127.0.0.1:1?protocol=http")).rejects.toMatchObject({
      code: "ERR_INVALID_ARGUMENT",
    });
    await expect(openBackend("r3map+h2c://127.0.0.1:1?ca=/x")).rejects.toMatchObject({
      code: "ERR_INVALID_ARGUMENT",
    });
    await expect(openBackend("r3map+https://127.0.0.1:1?ca=/nonexistent/ca.pem")).rejects.toMatchObject({
      code: "ERR_IO",
    });
    await expect(openBackend("r3map+h2c://127.0.0.1:1?sessions=0")).rejects.toMatchObject({
      code: "ERR_INVALID_ARGUMENT",
    });
  });
});
