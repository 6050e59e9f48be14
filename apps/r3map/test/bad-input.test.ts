import { run } from "@r3map/cli-kit/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli, r3map, stopAll } from "./support.js";

/**
 * Every bad input of issues #20 and #22 through the real binary: one line on
 * stderr, the documented exit status, no stack trace, and an exit by itself
 * (no spin: the run would time out).
 */
let remote = "";

beforeAll(async () => {
  const server = r3map(["serve", "memory:?size=16MiB", "--nbd", "127.0.0.1:0", "--print-uri"]);
  await server.until((r) => r.stdout.includes("\n"), "the server's URI");
  remote = server.stdout.trim();
});

afterAll(stopAll);

const cases: Array<[what: string, args: () => string[], status: number, message: RegExp]> = [
  [
    "--pull-workers abc",
    () => ["mount", remote, "--managed", "--pull-workers", "abc"],
    2,
    /--pull-workers: "abc" is not a whole number/,
  ],
  [
    "--pull-workers -1",
    () => ["mount", remote, "--pull-workers", "-1"],
    2,
    /--pull-workers: "-1" is not a whole number/,
  ],
  [
    "--push-interval abc",
    () => ["mount", remote, "--managed", "--push-interval", "abc"],
    2,
    /--push-interval: "abc" is not a duration/,
  ],
  [
    "--push-interval 30d",
    () => ["mount", remote, "--managed", "--push-interval", "30d"],
    2,
    /--push-interval: 30d is longer than/,
  ],
  ["--chunk-size 0", () => ["mount", remote, "--chunk-size", "0"], 2, /--chunk-size: 0 is less than 4 KiB/],
  ["--chunk-size 1", () => ["mount", remote, "--chunk-size", "1"], 2, /--chunk-size: 1 is less than 4 KiB/],
  ["--chunk-size 6000", () => ["mount", remote, "--chunk-size", "6000"], 2, /not a multiple of 4 KiB/],
  [
    "--chunk-size 12parsecs",
    () => ["mount", remote, "--chunk-size", "12parsecs"],
    2,
    /--chunk-size: "12parsecs" is not a size/,
  ],
  [
    "--chunk-size 1EiB",
    () => ["mount", remote, "--chunk-size", "1EiB"],
    2,
    /--chunk-size: "1EiB" is more than 8 PiB/,
  ],
  ["demo --size 1EiB", () => ["demo", "--size", "1EiB"], 2, /--size: "1EiB" is more than 8 PiB/],
  ["serve memory:?size=1EiB", () => ["serve", "memory:?size=1EiB"], 2, /"1EiB" is more than 8 PiB/],
  [
    "serve memory:?size=0",
    () => ["serve", "memory:?size=0", "--nbd", "127.0.0.1:0"],
    2,
    /memory:\?size=0 is empty \(0 bytes\)/,
  ],
  [
    "--nbd 127.0.0.1:99999",
    () => ["serve", "memory:?size=1MiB", "--nbd", "127.0.0.1:99999"],
    2,
    /--nbd: port 99999 is out of range \(0-65535\)/,
  ],
  [
    "--connect nowhere",
    () => ["serve", "memory:?size=1MiB", "--connect", "nowhere"],
    2,
    /--connect: "nowhere" is not an address/,
  ],
  [
    "--tls=require without a certificate",
    () => ["serve", "memory:?size=1MiB", "--tls=require"],
    2,
    /--tls=require needs --tls-cert and --tls-key/,
  ],
  [
    "--tls-cert that does not exist",
    () => ["serve", "memory:?size=1MiB", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.pem"],
    2,
    /--tls-cert: cannot read \/nonexistent.pem/,
  ],
  [
    "--print-uri with --json",
    () => ["serve", "memory:?size=1MiB", "--print-uri", "--json"],
    2,
    /'--print-uri' cannot be used with option '--json'/,
  ],
  [
    "NBD on 0.0.0.0 without authentication",
    () => ["serve", "memory:?size=1MiB", "--nbd", "0.0.0.0:0"],
    2,
    /refusing to serve NBD on 0\.0\.0\.0:0 without authentication.*--insecure/,
  ],
  [
    "Connect on :: without a token",
    () => ["serve", "memory:?size=1MiB", "--connect", "[::]:0"],
    2,
    /refusing to serve Connect on \[::\]:0 without authentication/,
  ],
  [
    "an unknown option",
    () => ["mount", remote, "--jsn"],
    2,
    /unknown option '--jsn' \(Did you mean --json\?\)/,
  ],
  ["an unknown scheme", () => ["info", "gopher://x/y"], 2, /no backend for "gopher:" URIs/],
  [
    "an unreachable remote",
    () => ["mount", "nbd://127.0.0.1:1/x"],
    3,
    /cannot connect .*ECONNREFUSED.*\(ERR_REMOTE_UNREACHABLE\)/,
  ],
  [
    "an export the server does not have",
    () => ["info", remote.replace(/\/default$/, "/nothing")],
    2,
    /"nothing"/,
  ],
];

describe("bad input gets one line and a documented exit status", () => {
  it.each(cases)("%s", async (_what, args, status, message) => {
    const result = await run(process.execPath, [cli, ...args()]);
    expect(result.status, result.stderr).toBe(status);
    expect(result.stderr.endsWith("\n")).toBe(true);
    expect(result.stderr.trimEnd().split("\n"), result.stderr).toHaveLength(1);
    expect(result.stderr).toMatch(/^r3map: /);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).not.toMatch(/\bat .*\.js:\d+/);
    expect(result.stdout).toBe("");
  });

  it("prints the stack trace with --debug", async () => {
    const result = await run(process.execPath, [
      cli,
      "--debug",
      "serve",
      "memory:?size=0",
      "--nbd",
      "127.0.0.1:0",
    ]);
    expect(result.status).toBe(2);
    expect(result.stderr.split("\n")[0]).toMatch(/^r3map: memory:\?size=0 is empty/);
    expect(result.stderr).toMatch(/\n\s+at serve \(.*:\d+:\d+\)/);
  });

  it("writes an error and a done event with --json once the command line has parsed", async () => {
    const result = await run(process.execPath, [cli, "mount", "nbd://127.0.0.1:1/x", "--json"]);
    expect(result.status).toBe(3);
    const events = result.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(events).toMatchObject([
      { event: "error", command: "mount", code: "ERR_REMOTE_UNREACHABLE", exitStatus: 3 },
      { event: "done", command: "mount", exitStatus: 3 },
    ]);
  });

  it("shows the help and exits 2 when no command is given; --version prints the version", async () => {
    const bare = await run(process.execPath, [cli]);
    expect(bare.status).toBe(2);
    expect(bare.stderr).toContain("Usage: r3map");
    const version = await run(process.execPath, [cli, "--version"]);
    expect(version.status).toBe(0);
    expect(version.stdout).toMatch(/^r3map \d+\.\d+\.\d+\n$/);
  });
});
