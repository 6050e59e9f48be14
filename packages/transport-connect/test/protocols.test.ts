import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { MemoryBackend } from "@r3map/core";
import { describe, expect, it } from "vitest";
import { ConnectServer, proto } from "../src/index.js";
import { createTestCertificates } from "./certificates.js";

describe("protocols served", () => {
  it("answers gRPC-web and Connect on h2c, and Connect over HTTP/1.1 with TLS", async () => {
    const certificates = createTestCertificates();
    const backend = new MemoryBackend(4096);
    await backend.writeAt(new TextEncoder().encode("r3map"), 0);
    const plain = await ConnectServer.listen({ backend });
    const secure = await ConnectServer.listen({
      backend,
      tls: { cert: certificates.serverCert, key: certificates.serverKey },
    });
    try {
      const transports = [
        createGrpcWebTransport({ baseUrl: plain.baseUrl, httpVersion: "2" }),
        createConnectTransport({ baseUrl: plain.baseUrl, httpVersion: "2" }),
        createConnectTransport({
          baseUrl: secure.baseUrl.replace("127.0.0.1", "localhost"),
          httpVersion: "1.1",
          nodeOptions: { ca: certificates.ca },
        }),
      ];
      for (const transport of transports) {
        const client = createClient(proto.mountV1.Backend, transport);
        const reply = await client.readAt({ Length: 5, Off: 0n });
        expect(new TextDecoder().decode(reply.P)).toBe("r3map");
      }
    } finally {
      await plain.close();
      await secure.close();
      certificates.remove();
    }
  });

  it("serves only the protocols asked for", async () => {
    const server = await ConnectServer.listen({
      backend: new MemoryBackend(4096),
      protocols: { grpcWeb: false },
    });
    try {
      const client = createClient(
        proto.r3mapV1.BackendService,
        createGrpcWebTransport({ baseUrl: server.baseUrl, httpVersion: "2" }),
      );
      await expect(client.getInfo({})).rejects.toThrow();
    } finally {
      await server.close();
    }
  });
});
