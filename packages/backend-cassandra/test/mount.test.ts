// Managed file mounts over Cassandra: the shared store-mount checks (fio verify and
// a byte-for-byte table check; the node stopped mid-run).
import { randomUUID } from "node:crypto";
import { describeStoreMount } from "@r3map/mount/testing";
import { inject } from "vitest";
import { serverAction } from "../../../scripts/servers/harness.js";
import "../src/index.js"; // registers cassandra: for the direct checks in this thread
import { cassandraUri } from "./helpers.js";

describeStoreMount({
  store: "Cassandra",
  schemes: ["@r3map/backend-cassandra"],
  uri: (params) => cassandraUri({ prefix: randomUUID(), ...params }),
  outageParams: { timeoutMs: 2000 },
  stop: () => serverAction("cassandra", "stop", inject("cassandra").state),
  start: () => serverAction("cassandra", "start", inject("cassandra").state),
  keepsData: true,
  readFailsWithinMs: 15_000,
  backWithinMs: 60_000,
});
