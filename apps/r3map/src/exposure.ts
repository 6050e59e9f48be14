import { type Address, formatAddress, isLocalOnly } from "@r3map/cli-kit";
import { R3mapError } from "@r3map/core";

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
