import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Running, run } from "../src/testing.js";

const example = path.join(import.meta.dirname, "..", "examples", "hash.mjs");
const hold = path.join(import.meta.dirname, "fixtures", "hold.mjs");
const started: Running[] = [];

afterEach(() => {
  for (const r of started.splice(0)) if (r.child.exitCode === null) r.child.kill("SIGKILL");
});

function start(args: string[]): Running {
  const running = new Running(process.execPath, args);
  started.push(running);
  return running;
}

describe("the README's example CLI (examples/hash.mjs)", () => {
  it("writes start, progress and done events, the digest last", async () => {
    const result = await run(process.execPath, [
      example,
      "sha256",
      process.execPath,
      "--chunk-size",
      "64KiB",
      "--json",
    ]);
    expect(result.status, result.stderr).toBe(0);
    const events = result.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(events[0]).toMatchObject({ event: "start", command: "sha256", file: process.execPath });
    expect(events.at(-2)).toMatchObject({ event: "progress", label: "hashed" });
    expect(events.at(-2).done).toBe(events.at(-2).total);
    expect(events.at(-1)).toMatchObject({ event: "done", exitStatus: 0 });
    const sha = await run("sha256sum", [process.execPath]);
    expect(events.at(-1).sha256).toBe(sha.stdout.split(" ")[0]);
    for (const e of events) expect(typeof e.time).toBe("string");
  });

  it("refuses a bad option in one line with exit status 2, before doing anything", async () => {
    const result = await run(process.execPath, [
      example,
      "sha256",
      "/etc/hostname",
      "--chunk-size",
      "1",
      "--json",
    ]);
    expect(result.status).toBe(2);
    expect(result.stderr).toBe(
      "hash: --chunk-size: 1 is less than 4 KiB, the smallest allowed (ERR_INVALID_ARGUMENT)\n",
    );
    expect(result.stdout).toBe("");
  });

  it("reports a failure in one line with its exit status, and the stack only with --debug", async () => {
    const plain = await run(process.execPath, [example, "sha256", "/nonexistent/file"]);
    expect(plain.status).toBe(1);
    expect(plain.stderr.trim().split("\n")).toHaveLength(1);
    expect(plain.stderr).toMatch(/^hash: ENOENT/);
    const debug = await run(process.execPath, [example, "--debug", "sha256", "/nonexistent/file"]);
    expect(debug.status).toBe(1);
    expect(debug.stderr).toMatch(/\n\s+at /);
  });

  it("draws a bar with rate and ETA on a terminal, plain lines elsewhere", async () => {
    const tty = await run("script", [
      "-qfec",
      `${process.execPath} ${example} sha256 ${process.execPath} --chunk-size 4KiB`,
      "/dev/null",
    ]);
    expect(tty.status, tty.stdout).toBe(0);
    expect(tty.stdout).toMatch(/hashed .*\d+% \| .* \/ .* \| .*\/s/); // the bar: percentage, amounts, rate
    expect(tty.stdout).toContain("\x1b["); // drawn in place
    const piped = await run(process.execPath, [example, "sha256", process.execPath]);
    const lines = piped.stderr.trim().split("\n");
    expect(lines[0]).toBe(`hashing ${process.execPath}`);
    expect(lines.at(-1)).toMatch(/^hashed \d+\.\d+ MiB \/ \d+\.\d+ MiB \(100%\)/);
    expect(piped.stderr).not.toContain("\x1b[");
  });
});

describe("closeOnSignals", () => {
  it("closes gracefully at the first signal: exit 0, done last", async () => {
    const held = start([hold]);
    await held.until((r) => r.stdout.includes('"start"'), "the start event");
    held.child.kill("SIGTERM");
    const result = await held.exited;
    expect(result.status).toBe(0);
    expect(held.events().at(-1)).toMatchObject({ event: "done", exitStatus: 0 });
    expect(result.stderr).toContain("SIGTERM: closing (a second signal exits at once)");
  });

  it("exits at once at the second signal with 128 + its number", async () => {
    const held = start([hold, "hang"]);
    await held.until((r) => r.stdout.includes('"start"'), "the start event");
    held.child.kill("SIGTERM");
    await held.until((r) => r.stderr.includes("closing"), "the close to begin");
    held.child.kill("SIGINT");
    const result = await held.exited;
    expect(result.status).toBe(130);
    expect(held.events().at(-1)).toMatchObject({ event: "done", exitStatus: 130 });
    expect(result.stderr).toContain("SIGINT again: exiting at once");
  });
});
