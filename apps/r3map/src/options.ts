import { collect, countOption, durationOption, sizeOption } from "@r3map/cli-kit";
import { Option } from "commander";

/** Scheme packages every command loads; `--scheme` adds more. The only list of them. */
const builtInSchemes = ["@r3map/nbd", "@r3map/transport-connect"];

/** The packages whose URI schemes a command needs: the built-in ones and those named with --scheme. */
export function schemePackages(extra: readonly string[] = []): string[] {
  return [...builtInSchemes, ...extra];
}

/** Imports the scheme packages here (serve, info); mounts import them in their engine instead. */
export async function importSchemes(extra: readonly string[] = []): Promise<void> {
  for (const name of schemePackages(extra)) await import(name);
}

/** The smallest chunk: a page, which slices map and FUSE and loop devices handle whole. */
export const MIN_CHUNK = 4096;
/** The largest chunk: one fetch lands in one buffer, and Node's buffers stop near 4 GiB. */
export const MAX_CHUNK = 1024 ** 3;

export const chunkSizeOption = () =>
  sizeOption(
    "--chunk-size <bytes>",
    "bytes fetched, cached and pushed as a unit: 4 KiB to 1 GiB, a multiple of 4 KiB",
    { min: MIN_CHUNK, max: MAX_CHUNK, multipleOf: MIN_CHUNK },
    "1MiB",
  );

export const pullWorkersOption = () =>
  countOption(
    "--pull-workers <n>",
    "managed: chunks pulled in the background at once (at most one per chunk); 0 pulls only on demand",
    {},
    "32",
  );

export const schemeOption = () =>
  new Option("--scheme <package>", "a package registering more backend URI schemes (repeatable)")
    .argParser(collect)
    .default([] as string[], "none");

export const jsonOption = () =>
  new Option("--json", "write NDJSON events (start, progress, warning, error, done) to stdout");

export const tokenFileOption = () =>
  new Option(
    "--token-file <file>",
    "bearer tokens for Connect, one per line (repeatable; R3MAP_TOKEN in the environment also counts)",
  )
    .argParser(collect)
    .default([] as string[], "none");

/** `--timeout`: the request deadline against a remote that does not answer (`what` says which requests). */
export const timeoutOption = (what: string) =>
  durationOption(
    "--timeout <duration>",
    `the longest ${what} waits for a remote that does not answer, retries included`,
    { minMs: 100 },
    "15s",
  );
export const tokenOption = () =>
  new Option(
    "--token <token>",
    "a bearer token Connect clients must send (repeatable; visible in ps: prefer --token-file)",
  )
    .argParser(collect)
    .default([] as string[], "none");

export const mountPointOption = () =>
  new Option("--mount-point <dir>", "an empty directory for the FUSE mount (default: a temporary one)");
