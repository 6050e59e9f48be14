import type * as http2 from "node:http2";

/**
 * HTTP/2 flow-control windows. The protocol's default (64 KiB per stream and
 * per connection) stalls every response larger than that on a WINDOW_UPDATE
 * round trip; chunk payloads are 64 KiB to 32 MiB.
 */
export const STREAM_WINDOW_BYTES = 16 * 1024 * 1024;
export const CONNECTION_WINDOW_BYTES = 64 * 1024 * 1024;

/**
 * What one HTTP/2 session may hold (MiB, both sides): twice the connection
 * window, for data queued or in flight. Node's default (10 MB) answers many
 * concurrent large calls with ENHANCE_YOUR_CALM.
 */
export const SESSION_MEMORY_MB = (2 * CONNECTION_WINDOW_BYTES) / 2 ** 20;

const widened = new WeakSet<http2.Http2Session>();

/** Opens a session's connection-level receive window once (settings only cover streams). */
export function widenWindow(session: http2.Http2Session | undefined): void {
  if (!session || widened.has(session) || session.destroyed) return;
  widened.add(session);
  try {
    session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
  } catch {
    // A session that is closing has no window to widen.
  }
}
