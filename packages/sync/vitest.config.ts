import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "@r3map/sync",
    include: ["test/**/*.test.ts", "src/**/*.test.ts"],
    testTimeout: 180_000,
    hookTimeout: 120_000,
    // Loop devices, 256 MiB files and 2 cores: one file at a time.
    pool: "forks",
    fileParallelism: false,
  },
});
