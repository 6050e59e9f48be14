import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "@r3map/cli-kit",
    include: ["test/**/*.test.ts", "src/**/*.test.ts"],
    testTimeout: 30_000,
    // Builds the workspace packages these tests import (through dist) if their sources changed.
    globalSetup: ["../../scripts/testing/fresh-build.ts"],
  },
});
