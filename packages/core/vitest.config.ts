import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "@r3map/core",
    include: ["src/**/*.test.ts"],
    testTimeout: 30_000,
  },
});
