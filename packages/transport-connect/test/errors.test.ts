import { isR3mapError, MemoryBackend, R3mapError } from "@r3map/core";
import { InstrumentedBackend, patternBytes, waitFor } from "@r3map/core/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectBackend, ConnectServer } from "../src/index.js";

const SIZE = 256 * 1024;

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(isR3mapError(error), `expected an R3mapError, got ${String(error)}`).toBe(true);
    return (error as R3mapError).code;
  }
  throw new Error("expected a rejection");
}

describe("typed errors through ConnectBackend, and the server keeps serving", () => {
  let backend: InstrumentedBackend;
  let server: ConnectServer;
  let client: ConnectBackend;

  beforeAll(async () => {
    backend = new InstrumentedBackend(new MemoryBackend(SIZE));
    server = await ConnectServer.listen({ backend, tokens: ["t"], maxRequestBytes: 16 * 1024 });
    client = await ConnectBackend.connect({ baseUrl: server.baseUrl, token: "t", timeoutMs: 2000 });
  });
  afterAll(async () => {
    await client?.close();
    await server?.close();
  });

  const stillServes = async () => {
    const data = patternBytes(1000, 42);
    await client.writeAt(data, 5000);
    const back = new Uint8Array(1000);
    await client.readAt(back, 5000);
    expect(Buffer.compare(back, data)).toBe(0);
  };

  it("learns size and the server's per-call cap from GetInfo", () => {
    expect(client.size).toBe(SIZE);
    expect(client.info.maxRequestBytes).toBe(16 * 1024);
    expect(client.info.readStream).toBe(true);
  });

  it("refuses out-of-range requests locally and on the server", async () => {
    expect(await codeOf(client.readAt(new Uint8Array(16), SIZE - 8))).toBe("ERR_OUT_OF_RANGE");
    // A client told a larger size than the server's (as with an original server) hears it from the server.
    const liar = await ConnectBackend.connect({
      baseUrl: server.baseUrl,
      token: "t",
      size: SIZE * 2,
      maxRequestBytes: 16 * 1024,
    });
    try {
      expect(await codeOf(liar.readAt(new Uint8Array(16), SIZE + 16))).toBe("ERR_OUT_OF_RANGE");
      expect(await codeOf(liar.writeAt(new Uint8Array(16), SIZE))).toBe("ERR_OUT_OF_RANGE");
    } finally {
      await liar.close();
    }
    await stillServes();
  });

  it("reports a request over the server's cap as ERR_INVALID_ARGUMENT when the client does not know the cap", async () => {
    const unaware = await ConnectBackend.connect({
      baseUrl: server.baseUrl,
      token: "t",
      size: SIZE,
      maxRequestBytes: 64 * 1024,
    });
    try {
      expect(await codeOf(unaware.readAt(new Uint8Array(32 * 1024), 0))).toBe("ERR_INVALID_ARGUMENT");
      const writes = backend.writes.length;
      expect(await codeOf(unaware.writeAt(new Uint8Array(32 * 1024), 0))).toBe("ERR_INVALID_ARGUMENT");
      expect(backend.writes.length).toBe(writes);
    } finally {
      await unaware.close();
    }
    // The informed client splits the same request under the cap.
    const big = patternBytes(100 * 1024, 3);
    await client.writeAt(big, 0);
    const back = new Uint8Array(big.length);
    await client.readAt(back, 0);
    expect(Buffer.compare(back, big)).toBe(0);
  });

  it("maps a missing or wrong token to ERR_PERMISSION", async () => {
    expect(await codeOf(ConnectBackend.connect({ baseUrl: server.baseUrl }))).toBe("ERR_PERMISSION");
    const wrong = await ConnectBackend.connect({ baseUrl: server.baseUrl, token: "nope", size: SIZE });
    try {
      const writes = backend.writes.length;
      expect(await codeOf(wrong.writeAt(new Uint8Array(8), 0))).toBe("ERR_PERMISSION");
      expect(backend.writes.length).toBe(writes);
    } finally {
      await wrong.close();
    }
  });

  it("gives ERR_ABORTED for a cancelled call and ERR_TIMEOUT for a missed deadline", async () => {
    backend.readGate.close(); // the backend does not answer until the test is done
    try {
      const controller = new AbortController();
      const pending = client.readAt(new Uint8Array(64), 0, { signal: controller.signal });
      await waitFor(() => backend.readGate.waiting === 1, "the call to reach the backend");
      controller.abort();
      expect(await codeOf(pending)).toBe("ERR_ABORTED");
      // timeoutMs is 2000 and the backend never answers: the deadline is what is tested.
      expect(await codeOf(client.readAt(new Uint8Array(64), 0))).toBe("ERR_TIMEOUT");
    } finally {
      backend.readGate.open();
    }
    await stillServes();
  });

  it("carries the backend's own error code back", async () => {
    backend.failWrites = 1;
    expect(await codeOf(client.writeAt(new Uint8Array(8), 0))).toBe("ERR_REMOTE_FAILED");
    const readOnly = await ConnectServer.listen({ backend: new MemoryBackend(4096, { readOnly: true }) });
    const reader = await ConnectBackend.connect({ baseUrl: readOnly.baseUrl });
    try {
      expect(reader.readOnly).toBe(true);
      const direct = await ConnectBackend.connect({ baseUrl: readOnly.baseUrl, size: 4096 });
      expect(await codeOf(direct.writeAt(new Uint8Array(8), 0))).toBe("ERR_READ_ONLY");
      await direct.close();
    } finally {
      await reader.close();
      await readOnly.close();
    }
    await stillServes();
  });

  it("refuses calls after close with ERR_CLOSED", async () => {
    const extra = await ConnectBackend.connect({ baseUrl: server.baseUrl, token: "t" });
    await extra.close();
    expect(await codeOf(extra.sync())).toBe("ERR_CLOSED");
  });
});

describe("unreachable servers and retries", () => {
  it("fails to connect with ERR_REMOTE_UNREACHABLE", async () => {
    const server = await ConnectServer.listen({ backend: new MemoryBackend(4096) });
    const url = server.baseUrl;
    await server.close();
    expect(await codeOf(ConnectBackend.connect({ baseUrl: url }))).toBe("ERR_REMOTE_UNREACHABLE");
  });

  it("retries reads and never-sent writes across a server restart on the same port", async () => {
    const memory = new MemoryBackend(64 * 1024);
    let server = await ConnectServer.listen({ backend: memory });
    const { port } = server;
    const client = await ConnectBackend.connect({ baseUrl: server.baseUrl, retries: 6, retryDelayMs: 100 });
    try {
      await client.writeAt(patternBytes(4096, 1), 0);
      await server.close();
      // The first attempts hit a closed port; the restart lands within the retry window.
      const write = client.writeAt(patternBytes(4096, 2), 4096);
      const read = client.readAt(new Uint8Array(4096), 0);
      server = await ConnectServer.listen({ backend: memory, port });
      await write;
      await read;
      const back = new Uint8Array(4096);
      await client.readAt(back, 4096);
      expect(Buffer.compare(back, patternBytes(4096, 2))).toBe(0);
    } finally {
      await client.close();
      await server.close();
    }
  });

  it("reports a server that went away mid-call", async () => {
    const backend = new InstrumentedBackend(new MemoryBackend(4096));
    const server = await ConnectServer.listen({ backend, closeGraceMs: 10 });
    const client = await ConnectBackend.connect({ baseUrl: server.baseUrl, retries: 0 });
    try {
      backend.writeGate.close();
      const pending = client.writeAt(new Uint8Array(8), 0);
      await waitFor(() => backend.writeGate.waiting === 1, "the call to reach the backend");
      void server.close(); // with the call held in flight
      expect(["ERR_REMOTE_UNREACHABLE", "ERR_REMOTE_FAILED"]).toContain(await codeOf(pending));
    } finally {
      backend.writeGate.open();
      await client.close();
      await server.close();
    }
  });
});

describe("R3mapError codes are kept as Connect metadata", () => {
  it("round-trips every code through toConnectError/fromConnectError", async () => {
    const { toConnectError, fromConnectError } = await import("../src/index.js");
    for (const code of [
      "ERR_OUT_OF_RANGE",
      "ERR_INVALID_ARGUMENT",
      "ERR_NO_SPACE",
      "ERR_INTEGRITY",
      "ERR_READ_ONLY",
    ] as const) {
      const back = fromConnectError(toConnectError(new R3mapError(code, "x")), "Call");
      expect(back.code).toBe(code);
    }
    expect(fromConnectError(toConnectError(new R3mapError("ERR_CLOSED", "x")), "Call").code).toBe(
      "ERR_REMOTE_FAILED",
    );
    expect(fromConnectError(new Error("boom"), "Call").code).toBe("ERR_REMOTE_FAILED");
  });
});
