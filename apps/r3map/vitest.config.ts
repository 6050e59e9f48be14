import { defineProject } from "vitest/config";

export default defineProject({
  test: { name: "r3map", include: ["test/**/*.test.ts"], testTimeout: 120_000, pool: "forks" },
});
