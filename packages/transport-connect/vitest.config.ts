import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "@r3map/transport-connect",
    // Builds the workspace packages these tests import (through dist) if their sources changed.
    globalSetup: ["../../scripts/testing/fresh-build.ts"],
    include: ["test/**/*.test.ts", "src/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
