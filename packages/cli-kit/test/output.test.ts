import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { Output, RateMeter } from "../src/index.js";

function capture() {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (d: Buffer) => {
    out += d;
  });
  stderr.on("data", (d: Buffer) => {
    err += d;
  });
  return { stdout, stderr, out: () => out, err: () => err };
}

describe("Output", () => {
  it("writes NDJSON events with --json, human lines on stderr, progress at most once a second plus the last", () => {
    let now = 0;
    const io = capture();
    const output = new Output({
      program: "r3map",
      command: "mount",
      json: true,
      stdout: io.stdout,
      stderr: io.stderr,
      progress: { tty: false, plainIntervalMs: 5000 },
      now: () => now,
    });
    output.start({ path: "/tmp/x" }, "mounted /tmp/x");
    for (let step = 1; step <= 40; step++) {
      now += 100;
      output.progress({
        label: "local",
        done: step * 1024 * 1024,
        total: 40 * 1024 * 1024,
        fields: { dirty: 0 },
      });
    }
    output.warning("almost full", { code: "ERR_NO_SPACE" });
    output.done({ path: "/tmp/x" });
    const events = io
      .out()
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(events.map((e) => e.event)).toEqual([
      "start",
      "progress",
      "progress",
      "progress",
      "progress",
      "progress",
      "warning",
      "done",
    ]);
    const progress = events.filter((e) => e.event === "progress");
    expect(progress.map((e) => e.done / 1024 / 1024)).toEqual([1, 11, 21, 31, 40]);
    expect(progress.at(-1)).toMatchObject({ label: "local", total: 40 * 1024 * 1024, eta: 0, dirty: 0 });
    expect(progress.at(-1).rate).toBe(10 * 1024 * 1024); // 1 MiB per 100 ms
    expect(events.at(-1)).toMatchObject({ event: "done", command: "mount", exitStatus: 0, path: "/tmp/x" });
    // Plain progress lines every 5 s of the fake clock (none in 4 s) and the last one.
    expect(io.err()).toBe(
      "mounted /tmp/x\nlocal 1.00 MiB / 40.0 MiB (2%)\nlocal 40.0 MiB / 40.0 MiB (100%), 10.0 MiB/s\nr3map: warning: almost full\n",
    );
  });

  it("reports an error in one line and as an event, returning its exit status", () => {
    const io = capture();
    const output = new Output({
      program: "r3map",
      command: "serve",
      json: true,
      stdout: io.stdout,
      stderr: io.stderr,
    });
    const error = Object.assign(new Error("listen EADDRINUSE: address already in use 127.0.0.1:10809"), {
      code: "EADDRINUSE",
    });
    expect(output.error(error, "--nbd")).toBe(1);
    expect(io.err()).toBe("r3map: --nbd: listen EADDRINUSE: address already in use 127.0.0.1:10809\n");
    expect(JSON.parse(io.out())).toMatchObject({
      event: "error",
      exitStatus: 1,
      message: expect.stringContaining("--nbd: listen"),
    });
  });

  it("writes nothing to stdout without --json", () => {
    const io = capture();
    const output = new Output({
      program: "r3map",
      stdout: io.stdout,
      stderr: io.stderr,
      progress: { tty: false },
    });
    output.start({ a: 1 }, "started");
    output.done({}, "done");
    expect(io.out()).toBe("");
    expect(io.err()).toBe("started\ndone\n");
  });
});

describe("RateMeter", () => {
  it("measures over its window and estimates the time left", () => {
    let now = 0;
    const meter = new RateMeter(1000, () => now);
    expect(meter.secondsLeft(10)).toBeUndefined();
    for (let i = 0; i <= 10; i++) {
      meter.sample(i * 100);
      now += 200;
    }
    expect(meter.perSecond).toBe(500);
    expect(meter.secondsLeft(1000)).toBe(2);
    expect(meter.secondsLeft(0)).toBe(0);
  });
});
