import { MemoryBackend } from "@r3map/core";
import { InstrumentedBackend, patternBytes, waitFor } from "@r3map/core/testing";
import { describe, expect, it } from "vitest";
import { ConnectBackend, ConnectServer } from "../src/index.js";

describe("session pool and bounded concurrency", () => {
  it("spreads calls over every session and keeps at most maxConcurrency in flight", async () => {
    const backend = new InstrumentedBackend(new MemoryBackend(1024 * 1024));
    const server = await ConnectServer.listen({ backend });
    const client = await ConnectBackend.connect({ baseUrl: server.baseUrl, sessions: 3, maxConcurrency: 4 });
    try {
      expect(server.openSessions).toBe(3);
      backend.writeGate.close();
      const data = patternBytes(32 * 4096, 8);
      const writes = Promise.all(
        Array.from({ length: 32 }, (_, i) =>
          client.writeAt(data.subarray(i * 4096, (i + 1) * 4096), i * 4096),
        ),
      );
      // Held at the backend until four are in flight at once: the bound is reached, not hoped for.
      await waitFor(() => backend.writeGate.waiting >= 4, "four calls in flight");
      backend.writeGate.open();
      await writes;
      expect(backend.maxInFlight).toBeLessThanOrEqual(4);
      expect(backend.maxInFlight).toBe(4);
      const back = new Uint8Array(data.length);
      await client.readAt(back, 0);
      expect(Buffer.compare(back, data)).toBe(0);
    } finally {
      await client.close();
      await server.close();
    }
  });

  it("splits a request larger than the server's limit into concurrent calls", async () => {
    const backend = new InstrumentedBackend(new MemoryBackend(1024 * 1024));
    const server = await ConnectServer.listen({ backend, maxRequestBytes: 64 * 1024 });
    const client = await ConnectBackend.connect({ baseUrl: server.baseUrl });
    try {
      const data = patternBytes(300 * 1024, 2);
      await client.writeAt(data, 1000);
      expect(backend.writes.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4].map((i) => 1000 + i * 64 * 1024));
      const back = new Uint8Array(data.length);
      await client.readAt(back, 1000);
      expect(Buffer.compare(back, data)).toBe(0);
    } finally {
      await client.close();
      await server.close();
    }
  });
});

describe("waiting and closing", () => {
  it("lets a call waiting for a slot be aborted, and bounds close() by closeGraceMs", async () => {
    const backend = new InstrumentedBackend(new MemoryBackend(64 * 1024));
    const server = await ConnectServer.listen({ backend });
    const client = await ConnectBackend.connect({
      baseUrl: server.baseUrl,
      maxConcurrency: 1,
      timeoutMs: 0,
      closeGraceMs: 200,
    });
    try {
      // The backend never answers the busy call: only an abort or close() can end what waits for it.
      backend.readGate.close();
      const busy = client.readAt(new Uint8Array(16), 0);
      await waitFor(() => backend.readGate.waiting === 1, "the busy call to reach the backend");
      const controller = new AbortController();
      const queued = client.readAt(new Uint8Array(16), 0, { signal: controller.signal });
      controller.abort();
      await expect(queued).rejects.toMatchObject({ code: "ERR_ABORTED" });
      expect(backend.readGate.waiting).toBe(1); // the aborted call never took the slot
      // close() waits 200 ms for the busy call, then cuts it.
      const closing = client.close();
      await expect(busy).rejects.toMatchObject({ code: "ERR_CLOSED" });
      await closing;
    } finally {
      backend.readGate.open();
      await client.close();
      await server.close();
    }
  });
});
