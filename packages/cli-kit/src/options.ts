import { Option } from "commander";
import { type Address, type AddressDefaults, parseAddressValue } from "./address.js";
import { type CountLimits, parseCountValue } from "./count.js";
import { type DurationLimits, parseDurationValue } from "./duration.js";
import { parseSizeValue, type SizeLimits } from "./size.js";

/**
 * commander `Option`s whose values are parsed and checked while the command
 * line is read: a bad value stops the program before it opens anything, with
 * a one-line message naming the option (printed by `runCli`). `fallback` is
 * the default as the user would type it; it is parsed the same way and shown
 * in --help.
 */

/** The option's long name (`--chunk-size`) from its flags (`-c, --chunk-size <bytes>`). */
function nameOf(flags: string): string {
  return /--[\w-]+/.exec(flags)?.[0] ?? flags;
}

function parsed<T>(
  flags: string,
  description: string,
  parse: (text: string) => T,
  fallback?: string,
): Option {
  const option = new Option(flags, description).argParser((text: string) => parse(text));
  return fallback === undefined ? option : option.default(parse(fallback), fallback);
}

/** A size in bytes (`64KiB`, `1GiB`; units up to EiB). */
export function sizeOption(
  flags: string,
  description: string,
  limits: SizeLimits = {},
  fallback?: string,
): Option {
  return parsed(flags, description, (text) => parseSizeValue(text, nameOf(flags), limits), fallback);
}

/** A whole number. */
export function countOption(
  flags: string,
  description: string,
  limits: CountLimits = {},
  fallback?: string,
): Option {
  return parsed(flags, description, (text) => parseCountValue(text, nameOf(flags), limits), fallback);
}

/** A duration in milliseconds (`500ms`, `5s`, `1m`; a bare number is milliseconds). */
export function durationOption(
  flags: string,
  description: string,
  limits: DurationLimits = {},
  fallback?: string,
): Option {
  return parsed(flags, description, (text) => parseDurationValue(text, nameOf(flags), limits), fallback);
}

/** An address: `host:port`, `[v6]:port`, `:port`, `port` or a UNIX socket path. */
export function addressOption(
  flags: string,
  description: string,
  defaults: AddressDefaults = {},
  fallback?: string,
): Option {
  return parsed<Address>(
    flags,
    description,
    (text) => parseAddressValue(text, nameOf(flags), defaults),
    fallback,
  );
}

/** Collects a repeatable option's values into a list (`--token-file a --token-file b`). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
