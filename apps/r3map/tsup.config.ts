import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["src/cli.ts", "src/nbd-server-worker.ts", "src/demo-memory-worker.ts"],
  format: ["esm"],
  sourcemap: true,
  clean: true,
  target: "node20",
});
