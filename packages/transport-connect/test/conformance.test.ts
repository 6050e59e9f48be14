import { MemoryBackend } from "@r3map/core";
import { describeBackendConformance } from "@r3map/core/testing";
import { afterAll } from "vitest";
import { ConnectBackend, ConnectServer } from "../src/index.js";
import { createTestCertificates } from "./certificates.js";

const servers: ConnectServer[] = [];
const certificates = createTestCertificates();
afterAll(async () => {
  await Promise.all(servers.map((server) => server.close()));
  certificates.remove();
});

describeBackendConformance(
  "ConnectBackend over h2c (gRPC, 2 sessions, 16 KiB per-call cap so requests split)",
  async (size) => {
    const server = await ConnectServer.listen({
      backend: new MemoryBackend(size),
      maxRequestBytes: 16 * 1024,
    });
    servers.push(server);
    return ConnectBackend.connect({ baseUrl: server.baseUrl, sessions: 2 });
  },
);

describeBackendConformance(
  "ConnectBackend over mutual TLS (Connect protocol, bearer token)",
  async (size) => {
    const server = await ConnectServer.listen({
      backend: new MemoryBackend(size),
      tls: { cert: certificates.serverCert, key: certificates.serverKey, ca: certificates.ca },
      tokens: ["s3cret"],
    });
    servers.push(server);
    return ConnectBackend.connect({
      baseUrl: server.baseUrl,
      protocol: "connect",
      token: "s3cret",
      tls: { ca: certificates.ca, cert: certificates.clientCert, key: certificates.clientKey },
    });
  },
);
