import { isIP } from "node:net";
import { invalidValue } from "./invalid.js";

/** Where to listen or connect: TCP host and port, or a UNIX socket path. */
export type Address = { host: string; port: number } | { path: string };

export interface AddressDefaults {
  /** Host when only a port is given (default 127.0.0.1). */
  host?: string;
  /** Accept port 0 (pick a free port) — for listening addresses (default true). */
  portZero?: boolean;
  /** Accept a UNIX socket path (default true). */
  path?: boolean;
}

/**
 * Parses `host:port`, `[v6]:port`, `:port`, `port` or a UNIX socket path (any
 * text with a `/`) given for `name`. Throws `ERR_INVALID_ARGUMENT` with a
 * one-line message naming `name`.
 */
export function parseAddressValue(text: string, name: string, defaults: AddressDefaults = {}): Address {
  if (text.includes("/")) {
    if (defaults.path === false) throw invalidValue(name, `"${text}" is a path; give host:port`);
    return { path: text };
  }
  const match = /^(?:\[([^\]]+)\]:|([^:]*):)?(\d+)$/.exec(text.trim());
  if (!match) {
    throw invalidValue(
      name,
      `"${text}" is not an address (host:port, [v6]:port, :port, port${defaults.path === false ? "" : " or /socket/path"})`,
    );
  }
  const port = Number(match[3]);
  const lowest = defaults.portZero === false ? 1 : 0;
  if (!Number.isSafeInteger(port) || port < lowest || port > 65535) {
    throw invalidValue(name, `port ${match[3]} is out of range (${lowest}-65535)`);
  }
  return { host: match[1] || match[2] || defaults.host || "127.0.0.1", port };
}

/** `host:port` (IPv6 in brackets) or the socket path, for messages and URIs. */
export function formatAddress(address: Address): string {
  if ("path" in address) return address.path;
  return `${isIP(address.host) === 6 ? `[${address.host}]` : address.host}:${address.port}`;
}

/**
 * True when only this machine can reach the address: a UNIX socket, a
 * 127.0.0.0/8 or ::1 address, or `localhost`. Anything else — a wildcard, a
 * host name, another interface's address — counts as reachable by others.
 */
export function isLocalOnly(address: Address): boolean {
  if ("path" in address) return true;
  const host = address.host.toLowerCase();
  if (host === "localhost" || host === "::1") return true;
  const v4 = host.startsWith("::ffff:") ? host.slice(7) : host;
  return isIP(v4) === 4 && v4.startsWith("127.");
}
