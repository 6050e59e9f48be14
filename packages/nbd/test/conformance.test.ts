import { join } from "node:path";
import { MEMORY_SEGMENT_SIZE, MemoryBackend } from "@r3map/core";
import { describeBackendConformance, patternBytes } from "@r3map/core/testing";
import { afterAll, describe, expect, it } from "vitest";
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

describe("reads served from the backend's memory", () => {
  it("sends from a memory segment in place, and copies a read that spans two segments", async () => {
    const MiB = 1024 * 1024;
    const memory = new MemoryBackend(MEMORY_SEGMENT_SIZE + 4 * MiB); // untouched pages cost nothing
    const server = new NbdServer({ exports: [{ name: "", backend: memory }] });
    servers.push(server);
    const address = await server.listen({ port: 0 });
    const client = await connectNbd({ port: (address as { port: number }).port });
    const around = MEMORY_SEGMENT_SIZE - 2 * MiB;
    const data = patternBytes(4 * MiB, 3);
    await client.writeAt(data, around);
    for (const [offset, length] of [
      [around, MiB], // inside the first segment: lent
      [MEMORY_SEGMENT_SIZE, MiB], // inside the second: lent
      [around, 4 * MiB], // across the boundary: copied
    ] as const) {
      const back = new Uint8Array(length);
      await client.readAt(back, offset);
      const start = offset - around;
      expect(Buffer.compare(back, data.subarray(start, start + length))).toBe(0);
    }
    await client.close();
  });
});
