import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const packageDir = fileURLToPath(new URL("..", import.meta.url));
const bin = join(packageDir, "node_modules", ".bin");
const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}` };

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

describe("protobuf sources", () => {
  it("pass buf lint", () => {
    execFileSync(join(bin, "buf"), ["lint"], { cwd: packageDir, env, stdio: "pipe" });
  });

  it("match the committed generated code (run `pnpm --filter @r3map/transport-connect generate` after editing proto/)", () => {
    const out = mkdtempSync(join(tmpdir(), "r3map-buf-gen-"));
    try {
      // -o puts the template's `out: src/gen` under the temp dir.
      execFileSync(join(bin, "buf"), ["generate", "-o", out], { cwd: packageDir, env, stdio: "pipe" });
      const fresh = join(out, "src", "gen");
      const committed = join(packageDir, "src", "gen");
      const names = (dir: string) =>
        filesUnder(dir)
          .map((path) => relative(dir, path))
          .sort();
      expect(names(fresh)).toEqual(names(committed));
      for (const name of names(fresh)) {
        expect(readFileSync(join(committed, name), "utf8"), `src/gen/${name} is stale`).toBe(
          readFileSync(join(fresh, name), "utf8"),
        );
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
