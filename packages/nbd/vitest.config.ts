import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "@r3map/nbd",
    // Builds the workspace packages these tests import (through dist) if their sources changed.
    globalSetup: ["../../scripts/testing/fresh-build.ts"],
    include: ["test/**/*.test.ts", "src/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Interop tests start real servers and move hundreds of MiB: one file at a time on a 2-core machine.
    fileParallelism: false,
  },
});
