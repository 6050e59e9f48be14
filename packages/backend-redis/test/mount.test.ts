// Managed file mounts over Redis: the shared store-mount checks (fio verify and a
// byte-for-byte store check; an outage mid-run), against a server of this file's own
// so that killing it disturbs no other test.
import { randomUUID } from "node:crypto";
import { describeStoreMount } from "@r3map/mount/testing";
import { afterAll, beforeAll } from "vitest";
import { startServer, type TestServer } from "../../../scripts/servers/harness.js";
import "../src/index.js"; // registers redis: for the direct checks in this thread

let server: TestServer;
beforeAll(async () => {
  server = await startServer("redis");
});
afterAll(async () => server?.stop());

describeStoreMount({
  store: "Redis",
  schemes: ["@r3map/backend-redis"],
  uri: (params) => {
    const url = new URL(server.env.REDIS_URL!);
    for (const [name, value] of Object.entries({ prefix: `mount:${randomUUID()}:`, ...params })) {
      url.searchParams.set(name, String(value));
    }
    return url.toString();
  },
  outageParams: { timeoutMs: 1000 },
  stop: () => server.kill(),
  start: () => server.start(),
  keepsData: false, // the test server runs without persistence
  readFailsWithinMs: 10_000,
  backWithinMs: 15_000,
  pullWorkers: 4,
});
