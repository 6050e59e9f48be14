import { randomUUID } from "node:crypto";
import {
  isR3mapError,
  openBackend,
  openChunkStoreBackend,
  type R3mapError,
  TransformStore,
} from "@r3map/core";
import { patternBytes, retryUntil } from "@r3map/core/testing";
import { type Cluster, Redis } from "ioredis";
import { afterEach, describe, expect, inject, it } from "vitest";
import { startServer, type TestServer } from "../../../scripts/servers/harness.js";
import { createRedisBackend, openRedisStore, type RedisChunkStore } from "../src/index.js";

const CHUNK = 4096;
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

function uri(base: string, params: Record<string, string | number>): string {
  const url = new URL(base);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, String(value));
  return url.toString();
}

async function store(base: string, params: Record<string, string | number> = {}): Promise<RedisChunkStore> {
  const opened = await openRedisStore(
    uri(base, { size: 64 * CHUNK, chunk: CHUNK, prefix: `t:${randomUUID()}:`, ...params }),
  );
  cleanups.push(() => opened.close());
  return opened;
}

/** A raw ioredis client on the same server, to look at what is stored. */
function raw(base: string): Redis {
  const url = new URL(base);
  const client = new Redis({
    host: url.hostname,
    port: Number(url.port),
    username: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
  });
  cleanups.push(() => client.quit());
  return client;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "expected a rejection").toBeDefined();
  return (error as R3mapError).code;
}

describe("RedisChunkStore", () => {
  it("stores one key per chunk named <prefix><byte offset>, raw bytes, and zero-fills missing keys", async () => {
    const base = inject("redisUrl");
    const s = await store(base);
    const backend = createRedisBackend(s);
    const data = patternBytes(CHUNK + 100, 3);
    await backend.writeAt(data, 2 * CHUNK);
    const client = raw(base);
    expect(
      Buffer.compare((await client.getBuffer(`${s.prefix}${2 * CHUNK}`))!, data.subarray(0, CHUNK)),
    ).toBe(0);
    // The partly written chunk was read-modify-written: its tail is zeros.
    const third = (await client.getBuffer(`${s.prefix}${3 * CHUNK}`))!;
    expect(third.length).toBe(CHUNK);
    expect(Buffer.compare(third.subarray(0, 100), data.subarray(CHUNK))).toBe(0);
    expect(await client.exists(`${s.prefix}0`)).toBe(0);
    const buffer = new Uint8Array(CHUNK).fill(0xa5);
    await backend.readAt(buffer, 0);
    expect(buffer.every((b) => b === 0)).toBe(true);
  });

  it("pipelines the per-chunk commands of one request (one pipeline per connection or master)", async () => {
    for (const base of [inject("redisUrl"), inject("redisClusterUrl")]) {
      const s = await store(base);
      const backend = createRedisBackend(s);
      const client: Redis | Cluster = s.client;
      // ArbitraryStage issues every chunk's GET in the same tick; auto-pipelining queues them together.
      const reading = backend.readAt(new Uint8Array(16 * CHUNK), 0);
      expect(client.autoPipelineQueueSize).toBe(16);
      await reading;
      const writing = backend.writeAt(patternBytes(16 * CHUNK, 4), 16 * CHUNK);
      expect(client.autoPipelineQueueSize).toBe(16);
      await writing;
    }
  });

  it("refuses a value longer than a chunk with ERR_INTEGRITY instead of truncating it", async () => {
    const base = inject("redisUrl");
    const s = await store(base);
    await raw(base).set(`${s.prefix}0`, Buffer.alloc(CHUNK + 1, 1));
    expect(await codeOf(createRedisBackend(s).readAt(new Uint8Array(CHUNK), 0))).toBe("ERR_INTEGRITY");
  });

  it("spreads a cluster's chunks over every master (no hash tags)", async () => {
    const base = inject("redisClusterUrl");
    const s = await store(base);
    const backend = createRedisBackend(s);
    await backend.writeAt(patternBytes(64 * CHUNK, 5), 0);
    const cluster = s.client as Cluster;
    const masters = cluster.nodes("master");
    expect(masters.length).toBe(3);
    const counts = await Promise.all(
      masters.map(async (node) => {
        let count = 0;
        let cursor = "0";
        do {
          const [next, keys] = await node.scan(cursor, "MATCH", `${s.prefix}*`, "COUNT", 1000);
          cursor = next;
          count += keys.length;
        } while (cursor !== "0");
        return count;
      }),
    );
    expect(counts.reduce((a, b) => a + b, 0)).toBe(64);
    for (const count of counts) expect(count).toBeGreaterThan(0);
    const back = new Uint8Array(64 * CHUNK);
    await backend.readAt(back, 0);
    expect(Buffer.compare(back, patternBytes(64 * CHUNK, 5))).toBe(0);
  });

  it("opens through the registered URI schemes and refuses bad URIs with typed errors", async () => {
    const base = inject("redisUrl");
    const backend = await openBackend(
      uri(base, { size: CHUNK * 4, chunk: CHUNK, prefix: `t:${randomUUID()}:` }),
    );
    cleanups.push(() => backend.close());
    await backend.writeAt(patternBytes(10, 1), 5);
    expect(await codeOf(openBackend(uri(base, { chunk: CHUNK })))).toBe("ERR_INVALID_ARGUMENT");
    expect(await codeOf(openRedisStore(uri(base, { size: CHUNK, timeoutMs: "x" })))).toBe(
      "ERR_INVALID_ARGUMENT",
    );
    const wrong = new URL(base);
    wrong.password = "wrong";
    expect(await codeOf(openRedisStore(uri(wrong.toString(), { size: CHUNK })))).toBe("ERR_PERMISSION");
    const readOnly = await store(base, { readOnly: 1 });
    expect(await codeOf(createRedisBackend(readOnly).writeAt(new Uint8Array(1), 0))).toBe("ERR_READ_ONLY");
  });

  it("fails fast with ERR_REMOTE_UNREACHABLE when nothing listens", async () => {
    const started = Date.now();
    expect(await codeOf(openRedisStore("redis://127.0.0.1:1/?size=4096&timeoutMs=1000"))).toBe(
      "ERR_REMOTE_UNREACHABLE",
    );
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe("Redis outage", () => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });

  it("gives typed errors within the timeout while the server is down, and works again once it returns", async () => {
    server = await startServer("redis");
    const s = await store(server.env.REDIS_URL!, { timeoutMs: 1000 });
    const backend = createRedisBackend(s);
    const before = patternBytes(3 * CHUNK, 1);
    await backend.writeAt(before, 0);

    await server.kill();
    for (const call of [
      () => backend.readAt(new Uint8Array(CHUNK), 0),
      () => backend.writeAt(patternBytes(CHUNK, 2), CHUNK),
    ]) {
      const started = Date.now();
      const code = await codeOf(call());
      expect(["ERR_REMOTE_UNREACHABLE", "ERR_TIMEOUT"]).toContain(code);
      expect(Date.now() - started).toBeLessThan(5000);
    }

    // The server comes back empty (no persistence); writes made after it returns must be intact.
    await server.start();
    const after = patternBytes(2 * CHUNK + 7, 3);
    // The server takes a moment to come back: retry typed failures until then.
    await retryUntil(() => backend.writeAt(after, 5), {
      timeoutMs: 15_000,
      intervalMs: 100,
      retryIf: isR3mapError,
    });
    const back = new Uint8Array(after.length);
    await backend.readAt(back, 5);
    expect(Buffer.compare(back, after)).toBe(0);
  });
});

describe("encrypted chunks in real Redis", () => {
  const key = new Uint8Array(32).map((_, i) => 255 - i);

  for (const cipher of ["aes-256-gcm", "chacha20-poly1305"] as const) {
    it(`${cipher}: Redis holds no plaintext, and a flipped stored byte fails with ERR_INTEGRITY`, async () => {
      const base = inject("redisUrl");
      const s = await store(base);
      const backend = openChunkStoreBackend(
        new TransformStore(s, { chunkSize: CHUNK, encryption: { cipher, key } }),
        {
          size: s.size,
          chunkSize: CHUNK,
        },
      );
      const marker = Buffer.from("R3MAP-SECRET-PLAINTEXT-MARKER:");
      const secret = Buffer.alloc(8 * CHUNK);
      for (let at = 0; at + marker.length <= secret.length; at += marker.length) marker.copy(secret, at);
      await backend.writeAt(secret, 100);
      await backend.writeAt(new Uint8Array(CHUNK), 20 * CHUNK); // a zero chunk: elided

      const client = raw(base);
      const keys = await client.keys(`${s.prefix}*`);
      expect(keys.length).toBe(9); // chunks 0..8 hold the secret; the zero chunk was deleted
      for (const k of keys) {
        const value = (await client.getBuffer(k))!;
        expect(value.length).toBeGreaterThan(CHUNK); // header + nonce + ciphertext + tag
        expect(value.includes(marker.subarray(0, 12)), `plaintext in ${k}`).toBe(false);
      }

      const back = new Uint8Array(secret.length);
      await backend.readAt(back, 100);
      expect(Buffer.compare(back, secret)).toBe(0);

      const target = `${s.prefix}${2 * CHUNK}`;
      const stored = (await client.getBuffer(target))!;
      await client.setrange(target, 40, Buffer.from([stored[40]! ^ 0x80]));
      const error = await backend.readAt(new Uint8Array(CHUNK), 2 * CHUNK).then(
        () => undefined,
        (e: unknown) => e as R3mapError,
      );
      expect(error?.code).toBe("ERR_INTEGRITY");
      // Chunks are bound to their index: a copy of chunk 1's value at chunk 3 is refused too.
      await client.set(`${s.prefix}${3 * CHUNK}`, (await client.getBuffer(`${s.prefix}${CHUNK}`))!);
      expect(await codeOf(backend.readAt(new Uint8Array(CHUNK), 3 * CHUNK))).toBe("ERR_INTEGRITY");
    });
  }
});
