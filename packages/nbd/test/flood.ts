import * as net from "node:net";

export interface FloodResult {
  /** Bytes handed to the socket. */
  sent: number;
  /** The server stopped taking our bytes (nothing drained for `heldBackMs`). */
  heldBack: boolean;
  /** The server closed the connection. */
  closed: boolean;
}

/** How long a flood waits for the socket to drain before it asks whether the server still works. */
const PATIENCE_MS = 500;
/** CPU the server may use in that time and still count as idle (timers, a GC). */
const IDLE_CPU_MS = 50;

/**
 * Writes `batch` up to `times` times as fast as the socket takes it, never
 * reading. Stops early when the server closes the connection, or when it
 * stops taking bytes while idle — its backpressure, through TCP: the flood
 * has made its point, and sending more would only fill the kernel's buffers.
 * A server that is slow but busy (its CPU time, `cpuMs`, still grows) is
 * waited for: it is still taking in the flood.
 */
export async function flood(
  socket: net.Socket,
  batch: Buffer,
  times: number,
  cpuMs: () => number,
): Promise<FloodResult> {
  socket.pause(); // never read what the server answers
  let sent = 0;
  for (let i = 0; i < times; i++) {
    if (socket.destroyed || !socket.writable) return { sent, heldBack: false, closed: true };
    sent += batch.length;
    if (socket.write(batch)) continue;
    for (;;) {
      const cpuBefore = cpuMs();
      const outcome = await drained(socket);
      if (outcome === "closed") return { sent, heldBack: false, closed: true };
      if (outcome === "drained") break;
      if (cpuMs() - cpuBefore < IDLE_CPU_MS) return { sent, heldBack: true, closed: false };
    }
  }
  return { sent, heldBack: false, closed: socket.destroyed };
}

function drained(socket: net.Socket): Promise<"drained" | "waiting" | "closed"> {
  return new Promise((resolve) => {
    const done = (value: "drained" | "waiting" | "closed") => {
      clearTimeout(timer);
      socket.off("drain", onDrain);
      socket.off("close", onClose);
      resolve(value);
    };
    const onDrain = () => done("drained");
    const onClose = () => done("closed");
    const timer = setTimeout(() => done("waiting"), PATIENCE_MS);
    socket.once("drain", onDrain);
    socket.once("close", onClose);
  });
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
