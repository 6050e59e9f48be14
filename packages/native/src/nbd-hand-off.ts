import type { Socket } from "node:net";
import { R3mapError } from "@r3map/core";

/**
 * An NBD connection handed over to native code, which then speaks the
 * transmission phase itself (`NbdClient.handOffConnection()` makes one): the
 * socket, negotiated for simple replies, and what requests on it must respect.
 * Whoever takes it dups the descriptor and destroys the socket.
 */
export interface NbdHandOff {
  socket: Socket;
  /** A request with no answer after this long fails the connection (0: 30 s). */
  timeoutMs: number;
  /** Offsets and lengths of requests must be multiples of this. */
  minimumBlockSize: number;
  /** Requests must not be longer. */
  maximumBlockSize: number;
}

/** The descriptor under a connected TCP or UNIX socket (node keeps it on the socket's handle). */
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
