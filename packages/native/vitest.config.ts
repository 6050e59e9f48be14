import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "@r3map/native",
    // Builds the workspace packages these tests import (through dist) if their sources changed.
    globalSetup: ["../../scripts/testing/fresh-build.ts"],
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // Kernel objects (mounts, loop devices, uffd regions) are global: one file at a time, each in its own process.
    pool: "forks",
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
