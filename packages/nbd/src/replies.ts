import { REPLY_FLAG_DONE, REPLY_TYPE, SIMPLE_REPLY_SIZE, STRUCTURED_HEADER_SIZE } from "./protocol.js";
import { writeSimpleReply, writeStructuredHeader, writeUInt64 } from "./wire.js";

/**
 * Encoders for the server's transmission-phase replies: a simple reply, or a
 * structured reply of one chunk with the DONE flag (the server never splits a
 * reply into several chunks).
 */

/** The cookie (handle) of the request a reply answers, as two 32-bit halves. */
export interface Cookie {
  cookieHigh: number;
  cookieLow: number;
}

/** Longest error message sent with a structured error reply. */
const MAX_MESSAGE = 1024;

/** A successful reply without data (every command but READ and BLOCK_STATUS). */
export function okReply(structured: boolean, cookie: Cookie): Buffer {
  if (!structured) {
    const out = Buffer.allocUnsafe(SIMPLE_REPLY_SIZE);
    writeSimpleReply(out, 0, cookie.cookieHigh, cookie.cookieLow);
    return out;
  }
  const out = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE);
  writeStructuredHeader(out, REPLY_FLAG_DONE, REPLY_TYPE.NONE, cookie.cookieHigh, cookie.cookieLow, 0);
  return out;
}

/** An error reply: the NBD errno, and over structured replies a message for the user too. */
export function errorReply(structured: boolean, cookie: Cookie, errno: number, message: string): Buffer {
  if (!structured) {
    const out = Buffer.allocUnsafe(SIMPLE_REPLY_SIZE);
    writeSimpleReply(out, errno, cookie.cookieHigh, cookie.cookieLow);
    return out;
  }
  const text = Buffer.from(message.slice(0, MAX_MESSAGE), "utf8");
  const out = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE + 6 + text.length);
  writeStructuredHeader(
    out,
    REPLY_FLAG_DONE,
    REPLY_TYPE.ERROR,
    cookie.cookieHigh,
    cookie.cookieLow,
    6 + text.length,
  );
  out.writeUInt32BE(errno, STRUCTURED_HEADER_SIZE);
  out.writeUInt16BE(text.length, STRUCTURED_HEADER_SIZE + 4);
  text.copy(out, STRUCTURED_HEADER_SIZE + 6);
  return out;
}

/** Bytes before a READ reply's data: a simple reply, or a structured OFFSET_DATA chunk's header and offset. */
export function readReplyHeaderSize(structured: boolean): number {
  return structured ? STRUCTURED_HEADER_SIZE + 8 : SIMPLE_REPLY_SIZE;
}

/** Writes the header of a successful READ reply of `length` bytes at `offset` to the start of `out`. */
export function writeReadReplyHeader(
  out: Buffer,
  structured: boolean,
  cookie: Cookie,
  offset: number,
  length: number,
): void {
  if (!structured) {
    writeSimpleReply(out, 0, cookie.cookieHigh, cookie.cookieLow);
    return;
  }
  writeStructuredHeader(
    out,
    REPLY_FLAG_DONE,
    REPLY_TYPE.OFFSET_DATA,
    cookie.cookieHigh,
    cookie.cookieLow,
    8 + length,
  );
  writeUInt64(out, offset, STRUCTURED_HEADER_SIZE);
}

/** A BLOCK_STATUS reply for one meta context: `[length, flags]` descriptors, consecutive from the request's offset. */
export function blockStatusReply(
  cookie: Cookie,
  contextId: number,
  extents: ReadonlyArray<readonly [length: number, flags: number]>,
): Buffer {
  const payload = 4 + extents.length * 8;
  const out = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE + payload);
  writeStructuredHeader(
    out,
    REPLY_FLAG_DONE,
    REPLY_TYPE.BLOCK_STATUS,
    cookie.cookieHigh,
    cookie.cookieLow,
    payload,
  );
  out.writeUInt32BE(contextId, STRUCTURED_HEADER_SIZE);
  extents.forEach(([length, flags], i) => {
    out.writeUInt32BE(length, STRUCTURED_HEADER_SIZE + 4 + i * 8);
    out.writeUInt32BE(flags, STRUCTURED_HEADER_SIZE + 8 + i * 8);
  });
  return out;
}
