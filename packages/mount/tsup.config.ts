import { defineConfig } from "tsup";

export default defineConfig({
  // The engine worker is its own entry: a worker thread loads it by file URL.
  // The test helpers are the `@r3map/mount/testing` export.
  entry: ["src/index.ts", "src/worker/engine-worker.ts", "src/testing/index.ts"],
  format: ["esm"],
  dts: { entry: ["src/index.ts", "src/testing/index.ts"] },
  sourcemap: true,
  clean: true,
  target: "node20",
  external: ["vitest"],
});
