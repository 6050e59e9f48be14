import { registerBackendScheme } from "@r3map/core";
import { openRedisBackend } from "./open.js";

export { redisError } from "./errors.js";
export { createRedisBackend, openRedisBackend, openRedisStore } from "./open.js";
export { RedisChunkStore, type RedisChunkStoreOptions } from "./store.js";

for (const scheme of ["redis", "rediss", "redis+cluster", "rediss+cluster"])
  registerBackendScheme(scheme, openRedisBackend, { network: true });
