import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "@r3map/backend-cassandra",
    include: ["test/**/*.test.ts", "src/**/*.test.ts"],
    // Starts a real Apache Cassandra 5.0 (scripts/servers/cassandra.sh) once for all files.
    // Builds the workspace packages these tests import (through dist) if their sources changed.
    globalSetup: ["../../scripts/testing/fresh-build.ts", "test/global-setup.ts"],
    // One file at a time: the outage test restarts the shared node.
    fileParallelism: false,
    testTimeout: 90_000,
    hookTimeout: 300_000,
  },
});
