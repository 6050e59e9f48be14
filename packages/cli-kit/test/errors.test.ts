import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { R3mapError } from "@r3map/core";
import { CommanderError } from "commander";
import { describe, expect, it } from "vitest";
import { ExitStatus, errorLine, exitStatusOf, readTokens } from "../src/index.js";

describe("exit statuses", () => {
  it.each([
    ["ERR_INVALID_ARGUMENT", ExitStatus.USAGE],
    ["ERR_UNKNOWN_SCHEME", ExitStatus.USAGE],
    ["ERR_REMOTE_UNREACHABLE", ExitStatus.UNREACHABLE],
    ["ERR_TIMEOUT", ExitStatus.UNREACHABLE],
    ["ERR_PROTOCOL", ExitStatus.REMOTE],
    ["ERR_KERNEL_FEATURE_MISSING", ExitStatus.UNABLE],
    ["ERR_READ_ONLY", ExitStatus.UNABLE],
    ["ERR_NO_SPACE", ExitStatus.NO_SPACE],
    ["ERR_IO", ExitStatus.FAILURE],
    ["ERR_BUSY", ExitStatus.BUSY],
  ] as const)("%s exits with %d", (code, status) => {
    expect(exitStatusOf(new R3mapError(code, "x"))).toBe(status);
  });

  it("maps usage errors, system errors by errno, and anything else to 1", () => {
    expect(exitStatusOf(new CommanderError(1, "commander.unknownOption", "error: unknown option"))).toBe(2);
    expect(exitStatusOf(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }))).toBe(3);
    expect(exitStatusOf(Object.assign(new Error("write ENOSPC"), { code: "ENOSPC" }))).toBe(6);
    expect(exitStatusOf(new TypeError("x is undefined"))).toBe(1);
  });
});

describe("errorLine", () => {
  it("is one line: the message and the code", () => {
    const error = new R3mapError("ERR_REMOTE_UNREACHABLE", "cannot reach\nthe remote");
    expect(errorLine(error)).toBe("cannot reach the remote (ERR_REMOTE_UNREACHABLE)");
  });

  it("joins commander's suggestion onto its line", () => {
    const error = new CommanderError(
      1,
      "commander.unknownOption",
      "error: unknown option '--jsn'\n(Did you mean --json?)",
    );
    expect(errorLine(error)).toBe("unknown option '--jsn' (Did you mean --json?)");
  });

  it("calls an unexpected error a bug, and gives stacks of it and its causes with debug", () => {
    const error = new TypeError("boom", { cause: new Error("deeper") });
    expect(errorLine(error)).toBe("unexpected error: boom (a bug; --debug prints where it happened)");
    const debug = errorLine(error, { debug: true });
    expect(debug.split("\n")[0]).toBe(errorLine(error));
    expect(debug).toMatch(/TypeError: boom\n\s+at /);
    expect(debug).toContain("caused by: Error: deeper");
  });
});

describe("readTokens", () => {
  it("collects the command line's, each file's and R3MAP_TOKEN's tokens, once each", () => {
    const dir = mkdtempSync(join(tmpdir(), "cli-kit-"));
    try {
      const file = join(dir, "tokens");
      writeFileSync(file, "# ours\nalpha\n\n beta \n");
      expect(readTokens({ tokens: ["alpha"], tokenFiles: [file], env: { R3MAP_TOKEN: "gamma" } })).toEqual([
        "alpha",
        "beta",
        "gamma",
      ]);
      writeFileSync(file, "# nothing\n");
      expect(() => readTokens({ tokenFiles: [file], env: {} })).toThrow(
        `--token-file: ${file} holds no token`,
      );
      expect(() => readTokens({ tokenFiles: [join(dir, "missing")], env: {} })).toThrow(
        /--token-file: cannot read .*ENOENT/,
      );
      expect(readTokens({ env: {} })).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
