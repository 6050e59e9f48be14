import { R3mapError } from "@r3map/core";

/** `host:port`, `:port`, `port`, or a UNIX socket path (containing a slash). */
export function parseAddress(text: string): { host: string; port: number } | { path: string } {
  if (text.includes("/")) return { path: text };
  const match = /^(?:(.*):)?(\d+)$/.exec(text);
  if (!match)
    throw new R3mapError("ERR_INVALID_ARGUMENT", `"${text}" is not an address (host:port, :port or /path)`);
  return { host: match[1] || "127.0.0.1", port: Number(match[2]) };
}

/** Scheme packages a CLI user may name with --scheme; these are always loaded. */
const builtIn = ["@r3map/nbd", "@r3map/transport-connect"];

export async function importSchemes(extra: readonly string[] = []): Promise<void> {
  for (const name of [...builtIn, ...extra]) await import(name);
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
