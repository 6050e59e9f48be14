import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "@r3map/backend-s3",
    include: ["test/**/*.test.ts", "src/**/*.test.ts"],
    // Starts a real Ceph radosgw (single-node memstore cluster, scripts/servers/radosgw.sh) once for all files.
    // Builds the workspace packages these tests import (through dist) if their sources changed.
    globalSetup: ["../../scripts/testing/fresh-build.ts", "test/global-setup.ts"],
    // One file at a time: the outage test stops the shared gateway.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 180_000,
  },
});
