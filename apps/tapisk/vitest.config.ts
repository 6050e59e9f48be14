import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "tapisk",
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // Mounts and loop devices are global: one file at a time, each in its own process.
    pool: "forks",
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 120_000,
  },
});
