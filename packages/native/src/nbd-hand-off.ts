import type { Socket } from "node:net";
import { type NbdHandOff, R3mapError } from "@r3map/core";

/**
 * The descriptor under a connected TCP or UNIX socket. Node offers no public
 * accessor; its libuv stream handle has carried `fd` since Node 0.x, and the
 * check below fails loudly (not silently wrong) if a release ever drops it.
 * Connecting natively instead would mean a second NBD handshake in C++; this
 * one read keeps the handshake in one place (`@r3map/nbd`).
 */
export function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== "number" || fd < 0) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      "an NBD hand-off needs a connected TCP or UNIX socket (not TLS)",
    );
  }
  return fd;
}

/** What native code needs of a hand-off: the descriptor (still owned by the socket) and the limits. */
export function nativeHandOff(handOff: NbdHandOff) {
  return {
    fd: socketFd(handOff.socket),
    timeoutMs: handOff.timeoutMs,
    minimumBlockSize: handOff.minimumBlockSize,
    maximumBlockSize: handOff.maximumBlockSize,
  };
}
