import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Backend } from "./backend.js";
import { DirectoryBackend } from "./backends/directory.js";
import { FileBackend } from "./backends/file.js";
import { MemoryBackend } from "./backends/memory.js";
import { R3mapError } from "./errors.js";
import { parseSize } from "./units.js";

/** Opens a backend from a parsed URI. */
export type BackendOpener = (uri: URL) => Backend | Promise<Backend>;

/** What a scheme's resources are, for callers that must decide without opening one. */
export interface SchemeTraits {
  /**
   * Opening the same URI twice gives two connections to one resource served
   * elsewhere (nbd:, nbd+unix:, redis:, s3:…), so a mount may open a second one for
   * its background pull. False (the default) for local resources: a second
   * `memory:` would be another resource, a second `file:` gains nothing.
   */
  network?: boolean;
}

const openers = new Map<string, { open: BackendOpener; traits: SchemeTraits }>();

/**
 * Makes `scheme` (without the colon, e.g. `"redis"`) openable with
 * `openBackend`. Packages register their schemes when imported; registering a
 * scheme again replaces the opener.
 */
export function registerBackendScheme(
  scheme: string,
  opener: BackendOpener,
  traits: SchemeTraits = {},
): void {
  openers.set(scheme.toLowerCase(), { open: opener, traits });
}

export function registeredBackendSchemes(): string[] {
  return [...openers.keys()].sort();
}

/** The traits its scheme declared for a URI (`{}` for an unknown scheme or a malformed URI). */
export function schemeTraits(uri: string | URL): SchemeTraits {
  const text = String(uri);
  const scheme = text.slice(0, Math.max(0, text.indexOf(":"))).toLowerCase();
  return openers.get(scheme)?.traits ?? {};
}

/**
 * Opens the backend a URI describes, so that a mount can be described by plain
 * data (for a worker thread, another process or a CLI flag). Built in:
 *
 * - `memory:?size=1GiB`
 * - `file:///var/lib/disk.img?size=1GiB&create=1&readOnly=1` (size defaults to the file's)
 * - `dir:///var/lib/chunks?size=1GiB&chunk=1MiB&maxOpen=512`
 */
export async function openBackend(uri: string | URL): Promise<Backend> {
  let url: URL;
  try {
    url = typeof uri === "string" ? new URL(uri) : uri;
  } catch (error) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `"${String(uri)}" is not a URI`, { cause: error });
  }
  const scheme = url.protocol.replace(/:$/, "").toLowerCase();
  const registered = openers.get(scheme);
  if (!registered) {
    throw new R3mapError(
      "ERR_UNKNOWN_SCHEME",
      `no backend for "${scheme}:" URIs; known: ${registeredBackendSchemes().join(", ")} (import the package that provides it)`,
    );
  }
  return registered.open(url);
}

/** Reads a size parameter (`size=1GiB`); throws naming the parameter when it is missing and required. */
export function sizeParam(url: URL, name: string, required: true): number;
export function sizeParam(url: URL, name: string, required?: false): number | undefined;
export function sizeParam(url: URL, name: string, required = false): number | undefined {
  const value = url.searchParams.get(name);
  if (value === null) {
    if (required)
      throw new R3mapError("ERR_INVALID_ARGUMENT", `${url.protocol} URI needs a "${name}" parameter`);
    return undefined;
  }
  return parseSize(value);
}

/** Reads an integer parameter of at least `min`, or `fallback` when absent. */
export function integerParam(url: URL, name: string, fallback: number, min = 1): number {
  const raw = url.searchParams.get(name);
  if (raw === null) return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `${name} must be an integer ≥ ${min}, got "${raw}"`);
  }
  return value;
}

/** Reads the file a parameter names (a TLS certificate, a key file), or undefined when absent. */
export function fileParam(url: URL, name: string): Buffer | undefined {
  const path = url.searchParams.get(name);
  if (path === null) return undefined;
  try {
    return readFileSync(path);
  } catch (error) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `cannot read the ${name} file ${path}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}

/** Reads a boolean parameter: present with no value, `1`, `true` or `yes` mean true. */
export function flagParam(url: URL, name: string): boolean {
  const value = url.searchParams.get(name);
  return value !== null && ["", "1", "true", "yes"].includes(value.toLowerCase());
}

registerBackendScheme(
  "memory",
  (url) => new MemoryBackend(sizeParam(url, "size", true), { readOnly: flagParam(url, "readOnly") }),
);

registerBackendScheme("file", (url) => {
  const size = sizeParam(url, "size");
  return FileBackend.open(fileURLToPath(new URL(url.pathname, "file://")), {
    ...(size === undefined ? {} : { size }),
    create: flagParam(url, "create"),
    readOnly: flagParam(url, "readOnly"),
  });
});

registerBackendScheme("dir", (url) => {
  const maxOpen = url.searchParams.get("maxOpen");
  return DirectoryBackend.open(fileURLToPath(new URL(url.pathname, "file://")), {
    size: sizeParam(url, "size", true),
    chunkSize: sizeParam(url, "chunk") ?? 1024 * 1024,
    ...(maxOpen === null ? {} : { maxOpenFiles: Number(maxOpen) }),
    readOnly: flagParam(url, "readOnly"),
  });
});
