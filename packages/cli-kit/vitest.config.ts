import { defineProject } from "vitest/config";

export default defineProject({
  test: { name: "@r3map/cli-kit", include: ["test/**/*.test.ts", "src/**/*.test.ts"], testTimeout: 30_000 },
});
