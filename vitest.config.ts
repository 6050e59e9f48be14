import { defineConfig } from "vitest/config";

// One run over every package, so the README's test command prints one summary.
// Packages with their own vitest.config.ts (timeouts, pools) are picked up as projects.
export default defineConfig({
  test: {
    projects: ["packages/*", "apps/*"],
    // Tests import the workspace packages' dist and the mount engine's worker runs from dist:
    // build whatever is older than its sources before any test starts (scripts/testing/fresh-build.ts).
    globalSetup: ["scripts/testing/fresh-build.ts"],
  },
});
