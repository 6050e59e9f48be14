import { randomUUID } from "node:crypto";
import { openRedisStore } from "@r3map/backend-redis";
import { copyInto, PULL_WORKERS, type ServerEnv, type Subject, seed, withParams } from "./subject.js";

export function redisSubject(env: ServerEnv): Subject {
  return {
    name: "redis",
    raw: "ioredis GET",
    schemes: [import.meta.resolve("@r3map/backend-redis")],
    concurrency: PULL_WORKERS,
    original: { managedMBs: 439, directMBs: 114, latencyUs: 200, label: "Redis" },
    async prepare(size, chunkSize) {
      const uri = withParams(env.REDIS_URL!, { size, chunk: chunkSize, prefix: `bench:${randomUUID()}:` });
      const source = await seed(uri, size);
      const store = await openRedisStore(uri);
      return {
        uri,
        source,
        readChunk: async (chunk, into) => copyInto(into, await store.client.getBuffer(store.keyOf(chunk))),
        close: () => store.close(),
      };
    },
  };
}
