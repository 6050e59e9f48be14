import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "@r3map/backend-redis",
    include: ["test/**/*.test.ts", "src/**/*.test.ts"],
    // Starts a real redis-server and a 3-master Redis Cluster (scripts/servers) once for all files.
    // Builds the workspace packages these tests import (through dist) if their sources changed.
    globalSetup: ["../../scripts/testing/fresh-build.ts", "test/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
