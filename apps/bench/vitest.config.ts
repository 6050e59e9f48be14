import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "@r3map/bench",
    include: ["src/**/*.test.ts"],
    testTimeout: 60_000,
    // Builds the workspace packages these tests import (through dist) if their sources changed.
    globalSetup: ["../../scripts/testing/fresh-build.ts"],
  },
});
