import * as net from "node:net";

export interface FloodResult {
  /** Bytes handed to the socket. */
  sent: number;
  /** The server stopped taking our bytes (nothing drained for `heldBackMs`). */
  heldBack: boolean;
  /** The server closed the connection. */
  closed: boolean;
}

/**
 * Writes `batch` up to `times` times as fast as the socket takes it, never
 * reading. Stops early when the server stops taking bytes for `heldBackMs`
 * (its backpressure, through TCP) or closes the connection: the flood has
 * then made its point, and waiting longer would only measure the kernel.
 */
export async function flood(
  socket: net.Socket,
  batch: Buffer,
  times: number,
  heldBackMs = 1_000,
): Promise<FloodResult> {
  socket.pause(); // never read what the server answers
  let sent = 0;
  for (let i = 0; i < times; i++) {
    if (socket.destroyed || !socket.writable) return { sent, heldBack: false, closed: true };
    sent += batch.length;
    if (socket.write(batch)) continue;
    const outcome = await new Promise<"drained" | "held" | "closed">((resolve) => {
      const done = (value: "drained" | "held" | "closed") => {
        clearTimeout(timer);
        socket.off("drain", onDrain);
        socket.off("close", onClose);
        resolve(value);
      };
      const onDrain = () => done("drained");
      const onClose = () => done("closed");
      const timer = setTimeout(() => done("held"), heldBackMs);
      socket.once("drain", onDrain);
      socket.once("close", onClose);
    });
    if (outcome === "held") return { sent, heldBack: true, closed: false };
    if (outcome === "closed") return { sent, heldBack: false, closed: true };
  }
  return { sent, heldBack: false, closed: socket.destroyed };
}

/** A plain TCP connection to 127.0.0.1:`port` that swallows its errors (a flood may be cut off). */
export async function connectRaw(port: number): Promise<net.Socket> {
  const socket = net.connect(port, "127.0.0.1");
  socket.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return socket;
}

/** `count` copies of `frame` back to back. */
export function repeated(frame: Buffer, count: number): Buffer {
  const out = Buffer.allocUnsafe(frame.length * count);
  for (let i = 0; i < count; i++) frame.copy(out, i * frame.length);
  return out;
}
