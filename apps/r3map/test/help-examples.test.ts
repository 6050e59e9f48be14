import { chmodSync, writeFileSync } from "node:fs";
import { Running, run } from "@r3map/cli-kit/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli, makeCertificates } from "./support.js";

/**
 * Every example at the end of every --help, run as written. They name fixed
 * ports (10809, 1337) and paths in /tmp, so they run in a network and mount
 * namespace of their own: a private loopback and a private /tmp, which go
 * away with the namespace — nothing here can collide with another test.
 */
const commands = [
  [],
  ["serve"],
  ["mount"],
  ["info"],
  ["demo"],
  ["migrate"],
  ["migrate", "seed"],
  ["migrate", "leech"],
];
let holder: Running;
let root = "";
const running = new Set<Running>();

/** Runs a shell line inside the namespace, in /tmp/examples (the holder's directory), with `r3map` on PATH. */
function inNamespace(line: string): Running {
  const process_ = new Running(
    "nsenter",
    ["-t", String(holder.child.pid), "-n", "-m", "--wd", "bash", "-c", line],
    { env: { ...process.env, PATH: `/tmp/bin:${process.env.PATH}` } },
  );
  running.add(process_);
  return process_;
}

/** Serve and mount run until a signal: wait for them to be ready, then close them as a user would. */
async function runExample(line: string): Promise<void> {
  const example = inNamespace(line);
  if (/\br3map (serve|mount|migrate seed|migrate leech) (?!--help)|--watch /.test(line)) {
    await ready(example, line);
    const result = await example.stop("SIGINT");
    expect(result.status, `${line}\n${result.stderr}`).toBe(0);
  } else {
    const result = await example.exited;
    expect(result.status, `${line}\n${result.stderr}`).toBe(0);
  }
  running.delete(example);
}

/** Waits until a long-running example says it is serving, mounted, seeding, leeching or has moved (sync --watch). */
function ready(example: Running, line: string): Promise<void> {
  return example.until(
    (r) =>
      /^(serving |seeding |leeching |moved )|mounted (managed|direct)/m.test(r.stderr) ||
      r.stdout.includes("\n"),
    `"${line}" to be ready`,
    60_000,
  );
}

async function examples(command: string[]): Promise<string[]> {
  const help = await run(process.execPath, [cli, ...command, "--help"]);
  expect(help.status).toBe(0);
  const tail = help.stdout.slice(help.stdout.lastIndexOf("\nExamples:\n"));
  // The examples end the help.
  expect(
    help.stdout.trimEnd().endsWith(tail.trimEnd()),
    `${command.join(" ")} --help ends with examples`,
  ).toBe(true);
  return [...tail.matchAll(/^ {4}\$ (.+)$/gm)].map((match) => match[1]!);
}

beforeAll(async () => {
  holder = new Running("unshare", [
    "--net",
    "--mount",
    "sh",
    "-c",
    "mount -t tmpfs r3map-examples /tmp && ip link set lo up && mkdir /tmp/examples /tmp/bin && cd /tmp/examples && echo ready && exec sleep 3600",
  ]);
  await holder.until((r) => r.stdout.includes("ready"), "the namespace");
  root = `/proc/${holder.child.pid}/root`;
  writeFileSync(`${root}/tmp/bin/r3map`, `#!/bin/sh\nexec ${process.execPath} ${cli} "$@"\n`);
  chmodSync(`${root}/tmp/bin/r3map`, 0o755);
  // The TLS example names nbdkit's file names in its working directory.
  makeCertificates(`${root}/tmp/examples`);
});

afterAll(async () => {
  for (const example of running) await example.stop();
  await holder?.stop("SIGKILL");
});

describe("--help examples run as written", () => {
  it("r3map, serve", async () => {
    for (const command of commands.slice(0, 2)) {
      const lines = await examples(command);
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) await runExample(line);
    }
  }, 300_000);

  it("mount and info, against the servers their examples name", async () => {
    const nbd = inNamespace("r3map serve 'memory:?size=64MiB'");
    const connect = inNamespace(
      "R3MAP_TOKEN=change-me r3map serve 'memory:?size=64MiB' --connect 127.0.0.1:1337",
    );
    await nbd.until((r) => r.stderr.includes("serving"), "the NBD server");
    await connect.until((r) => r.stderr.includes("serving"), "the Connect server");
    for (const command of [["mount"], ["info"]]) {
      const lines = await examples(command);
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) await runExample(line);
    }
    expect((await nbd.stop()).status).toBe(0);
    expect((await connect.stop()).status).toBe(0);
  }, 300_000);

  it("sync push and pull, against the servers their examples name", async () => {
    const nbd = inNamespace("r3map serve 'memory:?size=64MiB'");
    const connect = inNamespace("r3map serve 'memory:?size=64MiB' --connect 127.0.0.1:1337");
    await nbd.until((r) => r.stderr.includes("serving"), "the NBD server");
    await connect.until((r) => r.stderr.includes("serving"), "the Connect server");
    // The local copy the push examples name.
    writeFileSync(`${root}/tmp/examples/disk.img`, Buffer.alloc(64 * 1024 * 1024, 1));
    for (const command of [
      ["sync", "push"],
      ["sync", "pull"],
    ]) {
      const lines = await examples(command);
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) await runExample(line);
    }
    expect((await nbd.stop()).status).toBe(0);
    expect((await connect.stop()).status).toBe(0);
  }, 300_000);

  it("migrate and migrate seed; migrate leech against the seeder its examples name", async () => {
    for (const command of [["migrate"], ["migrate", "seed"]]) {
      const lines = await examples(command);
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) await runExample(line);
    }
    const seeder = inNamespace(
      "R3MAP_TOKEN=change-me r3map migrate seed 'memory:?size=64MiB' --listen 127.0.0.1:1337",
    );
    await ready(seeder, "the seeder");
    const [leech, leechThenSeed, ...more] = await examples(["migrate", "leech"]);
    expect(more).toEqual([]);
    // Left before finalizing: the seeder goes on, ready for the next leecher.
    await runExample(leech!);
    // Finalized with SIGUSR1 as its sentence says; it seeds on, and the first seeder has migrated away.
    const chained = inNamespace(leechThenSeed!);
    await ready(chained, leechThenSeed!);
    chained.child.kill("SIGUSR1");
    await chained.until((r) => /^seeding /m.test(r.stderr), "seeding on", 120_000);
    expect((await seeder.exited).status, seeder.stderr).toBe(0);
    const result = await chained.stop("SIGINT");
    expect(result.status, result.stderr).toBe(0);
  }, 300_000);

  it("demo", async () => {
    for (const line of await examples(["demo"])) await runExample(line);
  }, 300_000);
});
