import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "@r3map/migration",
    // Builds the workspace packages these tests import (through dist) if their sources changed.
    globalSetup: ["../../scripts/testing/fresh-build.ts"],
    include: ["test/**/*.test.ts", "src/**/*.test.ts"],
    testTimeout: 180_000,
    hookTimeout: 120_000,
    // Kernel devices and 2 cores: one file at a time.
    pool: "forks",
    fileParallelism: false,
  },
});
