import { randomUUID } from "node:crypto";
import { openChunkStoreBackend, TransformStore } from "@r3map/core";
import { describeBackendConformance } from "@r3map/core/testing";
import { inject } from "vitest";
import { createRedisBackend, openRedisStore } from "../src/index.js";

const CHUNK = 4096;

/** A URI naming a fresh key namespace on the test server. */
function uri(base: string, size: number, prefix: string): string {
  const url = new URL(base);
  url.searchParams.set("size", String(size));
  url.searchParams.set("chunk", String(CHUNK));
  url.searchParams.set("prefix", prefix);
  return url.toString();
}

for (const [name, base] of [
  ["redis (single node)", inject("redisUrl")],
  ["redis (3-master cluster)", inject("redisClusterUrl")],
  ["rediss (TLS, single node)", inject("redisTlsUrl")],
] as const) {
  let prefix = "";
  const open = async (size: number, fresh: boolean) => {
    if (fresh) prefix = `conf:${randomUUID()}:`;
    return createRedisBackend(await openRedisStore(uri(base, size, prefix)));
  };
  describeBackendConformance(`${name}, any range`, (size) => open(size, true), {
    reopen: (size) => open(size, false),
    timeoutMs: 60_000,
  });
  describeBackendConformance(
    `${name}, whole chunks`,
    async (size) =>
      createRedisBackend(await openRedisStore(uri(base, size, `conf:${randomUUID()}:`)), {
        wholeChunks: true,
      }),
    { wholeChunks: CHUNK, timeoutMs: 60_000 },
  );
}

describeBackendConformance(
  "redis (single node) through an AES-256-GCM + deflate TransformStore",
  async (size) => {
    const store = await openRedisStore(uri(inject("redisUrl"), size, `conf:${randomUUID()}:`));
    const key = new Uint8Array(32).fill(7);
    const sealed = new TransformStore(store, {
      chunkSize: CHUNK,
      encryption: { cipher: "aes-256-gcm", key },
      compression: "deflate",
    });
    return openChunkStoreBackend(sealed, { size, chunkSize: CHUNK });
  },
  { timeoutMs: 60_000 },
);
