import { type Address, formatAddress, isLocalOnly } from "@r3map/cli-kit";
import { R3mapError } from "@r3map/core";
import type { ServerTls } from "./serve-tls.js";

/** One endpoint `serve` is about to open, and whether a stranger reaching it would be turned away. */
export interface Exposure {
  transport: "NBD" | "Connect";
  address: Address;
  /** Clients must prove who they are: a client certificate (NBD, Connect) or a bearer token (Connect). */
  authenticated: boolean;
  /** How to make it authenticated, for the message. */
  remedy: string;
}

/**
 * Protected mode (as Redis has it): an endpoint other machines can reach that
 * lets anyone in is refused, unless the user said --insecure — then it is
 * allowed with a warning. Returns the warnings to print.
 */
export function checkExposure(exposures: readonly Exposure[], insecure: boolean): string[] {
  const open = exposures.filter((e) => !e.authenticated && !isLocalOnly(e.address));
  if (open.length > 0 && !insecure) {
    const e = open[0]!;
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `refusing to serve ${e.transport} on ${formatAddress(e.address)} without authentication: anyone who can reach it could read and write the data. ${e.remedy}, listen on 127.0.0.1 or a socket path, or pass --insecure`,
    );
  }
  return open.map(
    (e) =>
      `serving ${e.transport} on ${formatAddress(e.address)} to anyone who can reach it, without authentication (--insecure)`,
  );
}

/**
 * The endpoints of a server (serve, a migration's seeder) and whether each
 * checks who connects: NBD only by client certificate, over TLS it requires;
 * Connect by a token or a client certificate.
 */
export function endpointExposures(
  nbd: Address | undefined,
  connect: Address | undefined,
  tls: ServerTls | undefined,
  tokens: readonly string[],
): Exposure[] {
  const clientCerts = tls?.ca !== undefined;
  const list: Exposure[] = [];
  if (nbd) {
    list.push({
      transport: "NBD",
      address: nbd,
      // With TLS only offered, a client may skip it, and with it the certificate check.
      authenticated: clientCerts && tls?.mode === "require",
      remedy: "Require client certificates (--tls-cert … --tls-key … --tls-ca …)",
    });
  }
  if (connect) {
    list.push({
      transport: "Connect",
      address: connect,
      authenticated: clientCerts || tokens.length > 0,
      remedy: "Require a token (--token-file or R3MAP_TOKEN) or client certificates (--tls-ca)",
    });
  }
  return list;
}
