import { join } from "node:path";
import { MemoryBackend } from "@r3map/core";
import { describeBackendConformance } from "@r3map/core/testing";
import { afterAll, describe } from "vitest";
import { connectNbd, NbdServer } from "../src/index.js";
import { type Child, have, scratchDir, startNbdkit } from "./helpers.js";

const servers: NbdServer[] = [];
const children: Child[] = [];
const scratch = scratchDir();
afterAll(async () => {
  await Promise.all(servers.map((server) => server.close()));
  await Promise.all(children.map((child) => child.stop()));
  scratch.remove();
});

describeBackendConformance("NbdClient ↔ NbdServer (TCP)", async (size) => {
  const server = new NbdServer({ exports: [{ name: "disk", backend: new MemoryBackend(size) }] });
  servers.push(server);
  const address = await server.listen({ port: 0 });
  return connectNbd(`nbd://127.0.0.1:${(address as { port: number }).port}/disk`);
});

describeBackendConformance(
  "NbdClient ↔ NbdServer (UNIX socket, 2 connections, 16 KiB requests)",
  async (size) => {
    const server = new NbdServer({ exports: [{ name: "", backend: new MemoryBackend(size) }] });
    servers.push(server);
    const path = join(scratch.path, `ours-${servers.length}.sock`);
    await server.listen({ path });
    return connectNbd({ path, connections: 2, maxRequestSize: 16384 });
  },
);

let nbdkits = 0;
describe.skipIf(!have("nbdkit"))("nbdkit peer", () => {
  describeBackendConformance("NbdClient ↔ nbdkit memory", async (size) => {
    const socket = join(scratch.path, `nbdkit-${nbdkits++}.sock`);
    children.push(await startNbdkit(size, { socket }));
    return connectNbd(`nbd+unix:///?socket=${socket}`);
  });
});
