import { randomUUID } from "node:crypto";
import { isR3mapError, openBackend, type R3mapError } from "@r3map/core";
import { patternBytes, retryUntil } from "@r3map/core/testing";
import { afterEach, describe, expect, inject, it } from "vitest";
import { serverAction } from "../../../scripts/servers/harness.js";
import { type CassandraChunkStore, createCassandraBackend, openCassandraStore } from "../src/index.js";
import { cassandraUri } from "./helpers.js";

const CHUNK = 8 * 1024;
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

async function store(
  params: Record<string, string | number> = {},
  table = "chunks",
): Promise<CassandraChunkStore> {
  const opened = await openCassandraStore(
    cassandraUri({ size: 64 * CHUNK, chunk: CHUNK, prefix: randomUUID(), ...params }, table),
  );
  cleanups.push(() => opened.close());
  return opened;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "expected a rejection").toBeDefined();
  return (error as R3mapError).code;
}

describe("CassandraChunkStore on Cassandra 5", () => {
  it("creates (key blob, data blob), stores rows keyed <prefix>-<byte offset>, reads missing rows as zeros", async () => {
    const s = await store();
    const columns = await s.client.execute(
      "SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = 'r3map_test' AND table_name = 'chunks'",
    );
    expect(Object.fromEntries(columns.rows.map((row) => [row.get("column_name"), row.get("type")]))).toEqual({
      key: "blob",
      data: "blob",
    });
    const backend = createCassandraBackend(s);
    const data = patternBytes(CHUNK, 1);
    await backend.writeAt(data, 5 * CHUNK);
    const row = await s.client.execute(
      "SELECT data FROM r3map_test.chunks WHERE key = ?",
      [Buffer.from(`${s.prefix}-${5 * CHUNK}`)],
      {
        prepare: true,
      },
    );
    expect(Buffer.compare(row.first().get("data"), data)).toBe(0);
    const buffer = new Uint8Array(CHUNK).fill(0x77);
    await backend.readAt(buffer, 4 * CHUNK);
    expect(buffer.every((b) => b === 0)).toBe(true);
  });

  it("refuses a row longer than a chunk with ERR_INTEGRITY", async () => {
    const s = await store();
    await s.client.execute(
      "INSERT INTO r3map_test.chunks (key, data) VALUES (?, ?)",
      [Buffer.from(s.keyOf(0)), Buffer.alloc(CHUNK + 1)],
      {
        prepare: true,
      },
    );
    expect(await codeOf(createCassandraBackend(s).readAt(new Uint8Array(CHUNK), 0))).toBe("ERR_INTEGRITY");
  });

  it("applies the consistency level: TWO on a one-replica keyspace is unavailable", async () => {
    const s = await store({ consistency: "two" });
    expect(await codeOf(s.put(0, patternBytes(CHUNK, 2)))).toBe("ERR_REMOTE_UNREACHABLE");
  });

  it("creates a keyspace with the replication the URI asks for", async () => {
    const keyspace = `r3map_ks_${randomUUID().slice(0, 8)}`;
    const c = inject("cassandra");
    const s = await openCassandraStore(
      `cassandra://${c.user}:${c.password}@${c.host}:${c.port}/${keyspace}/t?size=${CHUNK}&chunk=${CHUNK}&create=1&localDataCenter=${c.dc}&replication=NetworkTopologyStrategy:${c.dc}=1`,
    );
    cleanups.push(() => s.close());
    const ks = await s.client.execute(
      "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
      [keyspace],
    );
    expect(ks.first().get("replication")).toMatchObject({
      class: "org.apache.cassandra.locator.NetworkTopologyStrategy",
      [c.dc]: "1",
    });
    await s.put(0, patternBytes(CHUNK, 3));
    expect(await s.get(0)).toEqual(Buffer.from(patternBytes(CHUNK, 3)));
    await s.client.execute(`DROP KEYSPACE ${keyspace}`);
  });

  it("opens through the cassandra: scheme and refuses bad URIs and credentials with typed errors", async () => {
    const backend = await openBackend(cassandraUri({ size: 4 * CHUNK, chunk: CHUNK, prefix: randomUUID() }));
    cleanups.push(() => backend.close());
    await backend.writeAt(patternBytes(20, 4), CHUNK - 10);
    const back = new Uint8Array(20);
    await backend.readAt(back, CHUNK - 10);
    expect(back).toEqual(patternBytes(20, 4));

    expect(await codeOf(openCassandraStore(cassandraUri({ size: CHUNK, consistency: "mostly" })))).toBe(
      "ERR_INVALID_ARGUMENT",
    );
    expect(
      await codeOf(openCassandraStore(cassandraUri({ size: CHUNK, replication: "SimpleStrategy:zero" }))),
    ).toBe("ERR_INVALID_ARGUMENT");
    expect(
      await codeOf(
        openCassandraStore(cassandraUri({ size: CHUNK }).replace("/r3map_test/chunks", "/r3map_test")),
      ),
    ).toBe("ERR_INVALID_ARGUMENT");
    const wrong = new URL(cassandraUri({ size: CHUNK }));
    wrong.password = "wrong";
    expect(await codeOf(openCassandraStore(wrong))).toBe("ERR_PERMISSION");
    // TLS verifies the server: without the test CA the self-signed chain is refused.
    expect(
      await codeOf(
        openCassandraStore(cassandraUri({ size: CHUNK, timeoutMs: 3000 }, "chunks", "cassandras")),
      ),
    ).toBe("ERR_REMOTE_UNREACHABLE");
    const readOnly = await store({ readOnly: 1 });
    expect(await codeOf(createCassandraBackend(readOnly).writeAt(new Uint8Array(1), 0))).toBe(
      "ERR_READ_ONLY",
    );
  });

  it("fails fast with ERR_REMOTE_UNREACHABLE when nothing listens", async () => {
    const started = Date.now();
    expect(await codeOf(openCassandraStore("cassandra://127.0.0.1:1/ks/t?size=4096&timeoutMs=1000"))).toBe(
      "ERR_REMOTE_UNREACHABLE",
    );
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe("Cassandra outage", () => {
  it("gives typed errors within a bounded time while the node is down; data and writes survive the restart", async () => {
    const state = inject("cassandra").state;
    const s = await store({ timeoutMs: 2000 });
    const backend = createCassandraBackend(s);
    const before = patternBytes(2 * CHUNK, 5);
    await backend.writeAt(before, 0);
    await serverAction("cassandra", "stop", state);
    try {
      for (const call of [
        () => backend.readAt(new Uint8Array(CHUNK), 0),
        () => backend.writeAt(patternBytes(CHUNK, 6), 3 * CHUNK),
      ]) {
        const started = Date.now();
        expect(["ERR_REMOTE_UNREACHABLE", "ERR_TIMEOUT"]).toContain(await codeOf(call()));
        expect(Date.now() - started).toBeLessThan(10_000);
      }
    } finally {
      await serverAction("cassandra", "start", state);
    }
    const after = patternBytes(CHUNK + 5, 7);
    // The server takes a moment to come back: retry typed failures until then.
    await retryUntil(() => backend.writeAt(after, 2 * CHUNK - 2), {
      timeoutMs: 60_000,
      intervalMs: 200,
      retryIf: isR3mapError,
    });
    const back = new Uint8Array(4 * CHUNK);
    await backend.readAt(back, 0);
    const expected = new Uint8Array(4 * CHUNK);
    expected.set(before);
    expected.set(after, 2 * CHUNK - 2);
    expect(Buffer.compare(back, expected)).toBe(0);
  });
});
