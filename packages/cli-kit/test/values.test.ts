import { describe, expect, it } from "vitest";
import {
  formatDuration,
  isLocalOnly,
  parseAddressValue,
  parseCountValue,
  parseDurationValue,
  parseSizeValue,
} from "../src/index.js";

/** Every refusal is an ERR_INVALID_ARGUMENT whose one-line message names the option. */
function refusal(parse: () => unknown): string {
  try {
    parse();
  } catch (error) {
    expect(error).toMatchObject({ code: "ERR_INVALID_ARGUMENT" });
    const message = (error as Error).message;
    expect(message).not.toContain("\n");
    return message;
  }
  throw new Error("accepted");
}

describe("sizes", () => {
  const chunk = { min: 4096, max: 1024 ** 3, multipleOf: 4096 };
  it.each([
    ["1MiB", 1024 ** 2],
    ["4KiB", 4096],
    ["1GiB", 1024 ** 3],
  ])("accepts %s", (text, bytes) => expect(parseSizeValue(text, "--chunk-size", chunk)).toBe(bytes));

  it.each([
    ["0", /--chunk-size: 0 is less than 4 KiB, the smallest allowed/],
    ["1", /less than 4 KiB/],
    ["6000", /6000 is not a multiple of 4 KiB/],
    ["2GiB", /2GiB is more than 1 GiB, the largest allowed/],
    ["1EiB", /--chunk-size: "1EiB" is more than 8 PiB/],
    ["12 parsecs", /--chunk-size: "12 parsecs" is not a size/],
  ])("refuses %s", (text, message) => {
    expect(refusal(() => parseSizeValue(text, "--chunk-size", chunk))).toMatch(message);
  });

  it("takes units up to EiB", () => {
    expect(parseSizeValue("2PiB", "--size")).toBe(2 * 1024 ** 5);
    expect(refusal(() => parseSizeValue("0.5EiB", "--size"))).toMatch(/more than 8 PiB/);
  });
});

describe("counts", () => {
  it("accepts whole numbers within the limits", () => {
    expect(parseCountValue("0", "--pull-workers")).toBe(0);
    expect(parseCountValue("100000000", "--pull-workers")).toBe(100_000_000);
  });

  it.each(["abc", "-1", "1.5", "1e3", "", "0x10"])("refuses %j", (text) => {
    expect(refusal(() => parseCountValue(text, "--pull-workers"))).toMatch(
      /^--pull-workers: ".*" is not a whole number/,
    );
  });

  it("checks the limits", () => {
    expect(refusal(() => parseCountValue("0", "--connections", { min: 1 }))).toBe(
      "--connections: 0 is less than 1, the smallest allowed",
    );
    expect(refusal(() => parseCountValue("17", "--connections", { max: 16 }))).toMatch(/17 is more than 16/);
  });
});

describe("durations", () => {
  it.each([
    ["5s", 5000],
    ["1m", 60_000],
    ["500ms", 500],
    ["1m30s", 90_000],
    ["1.5h", 5_400_000],
    ["2500", 2500],
  ])("reads %s as %d ms", (text, ms) => expect(parseDurationValue(text, "--push-interval")).toBe(ms));

  it("takes 0 only where it means something, and says what in the message", () => {
    expect(parseDurationValue("0", "--push-interval", { zero: "only on sync" })).toBe(0);
    expect(refusal(() => parseDurationValue("0", "--timeout"))).toMatch(/--timeout: 0 is shorter than/);
    expect(refusal(() => parseDurationValue("abc", "--push-interval", { zero: "only on sync" }))).toBe(
      '--push-interval: "abc" is not a duration (examples: 500ms, 5s, 1m, 1h; 0 = only on sync)',
    );
  });

  it("refuses what a Node timer cannot wait for (it would fire after 1 ms)", () => {
    expect(refusal(() => parseDurationValue("30d", "--push-interval"))).toMatch(/30d is longer than 24d20h/);
  });

  it("formats short and long durations", () => {
    expect(formatDuration(0.47)).toBe("0.5s");
    expect(formatDuration(75)).toBe("1m15s");
    expect(formatDuration(3 * 3600 + 120)).toBe("3h02m");
    expect(formatDuration(Number.NaN)).toBe("?");
  });
});

describe("addresses", () => {
  it.each([
    ["127.0.0.1:10809", { host: "127.0.0.1", port: 10809 }],
    [":0", { host: "127.0.0.1", port: 0 }],
    ["1337", { host: "127.0.0.1", port: 1337 }],
    ["[::1]:80", { host: "::1", port: 80 }],
    ["/run/r3map.sock", { path: "/run/r3map.sock" }],
    ["./x.sock", { path: "./x.sock" }],
  ])("reads %s", (text, address) => expect(parseAddressValue(text, "--nbd")).toEqual(address));

  it("refuses ports out of range and what is no address", () => {
    expect(refusal(() => parseAddressValue("127.0.0.1:99999", "--nbd"))).toBe(
      "--nbd: port 99999 is out of range (0-65535)",
    );
    expect(refusal(() => parseAddressValue("nowhere", "--nbd"))).toMatch(
      /--nbd: "nowhere" is not an address/,
    );
    expect(refusal(() => parseAddressValue("h:0", "--connect-to", { portZero: false }))).toMatch(/1-65535/);
    expect(refusal(() => parseAddressValue("/x.sock", "--host", { path: false }))).toMatch(/is a path/);
  });

  it("knows which addresses only this machine reaches", () => {
    for (const host of ["127.0.0.1", "127.9.9.9", "::1", "localhost", "::ffff:127.0.0.1"])
      expect(isLocalOnly({ host, port: 1 })).toBe(true);
    for (const host of ["0.0.0.0", "::", "10.0.0.1", "example.org"])
      expect(isLocalOnly({ host, port: 1 })).toBe(false);
    expect(isLocalOnly({ path: "/tmp/s" })).toBe(true);
  });
});
