import { defineConfig } from "tsup";

export default defineConfig({
  // The engine worker is its own entry: a worker thread loads it by file URL.
  entry: ["src/index.ts", "src/worker/engine-worker.ts"],
  format: ["esm"],
  dts: { entry: "src/index.ts" },
  sourcemap: true,
  clean: true,
  target: "node20",
});
