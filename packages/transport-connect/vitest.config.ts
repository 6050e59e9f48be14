import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "@r3map/transport-connect",
    include: ["test/**/*.test.ts", "src/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
