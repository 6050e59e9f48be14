import { defineConfig } from "vitest/config";

// One run over every package, so the README's test command prints one summary.
// Packages with their own vitest.config.ts (timeouts, pools) are picked up as projects.
export default defineConfig({
  test: {
    projects: ["packages/*", "apps/*"],
  },
});
