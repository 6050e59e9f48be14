import { randomUUID } from "node:crypto";
import { describeBackendConformance } from "@r3map/core/testing";
import { inject } from "vitest";
import { createCassandraBackend, openCassandraStore } from "../src/index.js";
import { cassandraUri } from "./helpers.js";

const CHUNK = 16 * 1024;
let prefix = "";

const open = async (
  size: number,
  fresh: boolean,
  extra: Record<string, string> = {},
  scheme = "cassandra",
) => {
  if (fresh) prefix = randomUUID();
  return createCassandraBackend(
    await openCassandraStore(cassandraUri({ size, chunk: CHUNK, prefix, ...extra }, "chunks", scheme)),
  );
};

describeBackendConformance("cassandra 5, any range", (size) => open(size, true), {
  reopen: (size) => open(size, false),
  timeoutMs: 90_000,
});
describeBackendConformance(
  "cassandras (TLS), consistency one, whole chunks",
  async (size) =>
    createCassandraBackend(
      await openCassandraStore(
        cassandraUri(
          { size, chunk: CHUNK, prefix: randomUUID(), consistency: "one", ca: inject("cassandra").ca },
          "chunks",
          "cassandras",
        ),
      ),
      { wholeChunks: true },
    ),
  { wholeChunks: CHUNK, timeoutMs: 90_000 },
);
