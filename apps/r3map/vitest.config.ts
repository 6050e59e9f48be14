import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "r3map",
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    pool: "forks",
    // Builds the CLI and the workspace packages it uses if their sources changed (the tests run dist/cli.js).
    globalSetup: ["../../scripts/testing/fresh-build.ts"],
  },
});
