import { readFileSync } from "node:fs";
import { join } from "node:path";
import type * as tls from "node:tls";
import { flagParam, R3mapError, registerBackendScheme } from "@r3map/core";
import type { NbdClientOptions } from "./client-options.js";

/**
 * Parses the NBD URI forms libnbd uses (and a few r3map parameters):
 *
 * - `nbd://host[:port]/[export]` — TCP (port 10809 by default)
 * - `nbds://host[:port]/[export]` — TCP with STARTTLS
 * - `nbd+unix:///[export]?socket=/path`, `nbds+unix:///[export]?socket=/path`
 *
 * Parameters: `tls-certificates=DIR` (ca-cert.pem, and client-cert.pem +
 * client-key.pem if present, as nbdkit/qemu name them), `ca=FILE`,
 * `cert=FILE`, `key=FILE`, `insecure` or `tls-verify-peer=false` (no
 * certificate check), `connections=N`, `timeout=MS` (the deadline of a request, retries included),
 * `retries=N` (reconnect attempts per request; `retries=until-timeout`: as many as the deadline allows).
 */
export function parseNbdUri(uri: string | URL): NbdClientOptions {
  let url: URL;
  try {
    url = typeof uri === "string" ? new URL(uri) : uri;
  } catch (error) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `"${String(uri)}" is not a URI`, { cause: error });
  }
  const scheme = url.protocol.replace(/:$/, "").toLowerCase();
  if (!["nbd", "nbds", "nbd+unix", "nbds+unix"].includes(scheme)) {
    throw new R3mapError(
      "ERR_UNKNOWN_SCHEME",
      `"${scheme}:" is not an NBD URI; use nbd://, nbds://, nbd+unix:// or nbds+unix://`,
    );
  }
  const secure = scheme.startsWith("nbds");
  const options: NbdClientOptions = { export: decodeURIComponent(url.pathname.replace(/^\//, "")) };
  if (scheme.endsWith("+unix")) {
    const socket = url.searchParams.get("socket");
    if (!socket) throw new R3mapError("ERR_INVALID_ARGUMENT", `${scheme}: URIs need ?socket=/path/to/socket`);
    options.path = socket;
  } else {
    if (!url.hostname)
      throw new R3mapError("ERR_INVALID_ARGUMENT", `${scheme}: URI "${url.href}" has no host`);
    options.host = url.hostname.replace(/^\[|\]$/g, "");
    if (url.port) options.port = Number(url.port);
  }
  if (secure) options.tls = tlsOptions(url);
  const connections = url.searchParams.get("connections");
  if (connections !== null) options.connections = integer(connections, "connections");
  const retries = url.searchParams.get("retries");
  if (retries !== null) {
    options.retry = {
      attempts: retries === "until-timeout" ? Number.MAX_SAFE_INTEGER : integer(retries, "retries"),
    };
  }
  const timeout = url.searchParams.get("timeout");
  if (timeout !== null) options.timeoutMs = integer(timeout, "timeout");
  return options;
}

function integer(value: string, name: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `NBD URI parameter ${name} must be a non-negative integer, got "${value}"`,
    );
  return n;
}

function tlsOptions(url: URL): tls.ConnectionOptions {
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `cannot read the TLS ${what} ${path}: ${(error as Error).message}`,
        { cause: error },
      );
    }
  };
  const options: tls.ConnectionOptions = {};
  const dir = url.searchParams.get("tls-certificates");
  if (dir) {
    options.ca = read(join(dir, "ca-cert.pem"), "CA certificate");
    try {
      options.cert = readFileSync(join(dir, "client-cert.pem"));
      options.key = readFileSync(join(dir, "client-key.pem"));
    } catch {
      // No client certificate in the directory: server-authenticated TLS only.
    }
  }
  const ca = url.searchParams.get("ca");
  if (ca) options.ca = read(ca, "CA certificate");
  const cert = url.searchParams.get("cert");
  if (cert) options.cert = read(cert, "client certificate");
  const key = url.searchParams.get("key");
  if (key) options.key = read(key, "client key");
  if (flagParam(url, "insecure") || url.searchParams.get("tls-verify-peer") === "false")
    options.rejectUnauthorized = false;
  return options;
}

/** Makes `openBackend("nbd://…")` and friends return an NbdClient. Runs when @r3map/nbd is imported. */
export function registerNbdSchemes(
  connect: (options: NbdClientOptions) => Promise<import("@r3map/core").Backend>,
): void {
  for (const scheme of ["nbd", "nbds", "nbd+unix", "nbds+unix"]) {
    // The mount's deadline, unless the URI sets its own (`timeout=`).
    registerBackendScheme(
      scheme,
      (url, options) =>
        connect({ ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}), ...parseNbdUri(url) }),
      { network: true },
    );
  }
}
