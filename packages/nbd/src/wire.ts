import {
  IHAVEOPT,
  OPTION_HEADER_SIZE,
  OPTION_REPLY_HEADER_SIZE,
  OPTION_REPLY_MAGIC,
  REQUEST_MAGIC,
  REQUEST_SIZE,
  SIMPLE_REPLY_MAGIC,
  SIMPLE_REPLY_SIZE,
  STRUCTURED_HEADER_SIZE,
  STRUCTURED_REPLY_MAGIC,
} from "./protocol.js";

/** Encoders for the fixed frames of the protocol, shared by server and client. */

export function optionRequest(option: number, data: Uint8Array = new Uint8Array(0)): Buffer {
  const out = Buffer.allocUnsafe(OPTION_HEADER_SIZE + data.length);
  out.writeBigUInt64BE(IHAVEOPT, 0);
  out.writeUInt32BE(option, 8);
  out.writeUInt32BE(data.length, 12);
  out.set(data, OPTION_HEADER_SIZE);
  return out;
}

export function optionReply(option: number, type: number, data: Uint8Array = new Uint8Array(0)): Buffer {
  const out = Buffer.allocUnsafe(OPTION_REPLY_HEADER_SIZE + data.length);
  out.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  out.writeUInt32BE(option, 8);
  out.writeUInt32BE(type >>> 0, 12);
  out.writeUInt32BE(data.length, 16);
  out.set(data, OPTION_REPLY_HEADER_SIZE);
  return out;
}

/** A u32-length-prefixed string, as in LIST, GO and meta-context payloads. */
export function lengthPrefixed(text: string): Buffer {
  const bytes = Buffer.from(text, "utf8");
  const out = Buffer.allocUnsafe(4 + bytes.length);
  out.writeUInt32BE(bytes.length, 0);
  bytes.copy(out, 4);
  return out;
}

/** A transmission request header; the cookie is a 64-bit value split into two halves. */
export function requestHeader(
  command: number,
  flags: number,
  cookieHigh: number,
  cookieLow: number,
  offset: number,
  length: number,
): Buffer {
  const out = Buffer.allocUnsafe(REQUEST_SIZE);
  writeRequestHeader(out, 0, command, flags, cookieHigh, cookieLow, offset, length);
  return out;
}

export function writeRequestHeader(
  out: Buffer,
  at: number,
  command: number,
  flags: number,
  cookieHigh: number,
  cookieLow: number,
  offset: number,
  length: number,
): void {
  out.writeUInt32BE(REQUEST_MAGIC, at);
  out.writeUInt16BE(flags, at + 4);
  out.writeUInt16BE(command, at + 6);
  out.writeUInt32BE(cookieHigh, at + 8);
  out.writeUInt32BE(cookieLow, at + 12);
  writeUInt64(out, offset, at + 16);
  out.writeUInt32BE(length, at + 24);
}

export function writeSimpleReply(out: Buffer, error: number, cookieHigh: number, cookieLow: number): void {
  out.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  out.writeUInt32BE(error, 4);
  out.writeUInt32BE(cookieHigh, 8);
  out.writeUInt32BE(cookieLow, 12);
}

export function writeStructuredHeader(
  out: Buffer,
  flags: number,
  type: number,
  cookieHigh: number,
  cookieLow: number,
  length: number,
): void {
  out.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  out.writeUInt16BE(flags, 4);
  out.writeUInt16BE(type, 6);
  out.writeUInt32BE(cookieHigh, 8);
  out.writeUInt32BE(cookieLow, 12);
  out.writeUInt32BE(length, 16);
}

/** Writes a non-negative safe integer as a u64 without going through BigInt. */
export function writeUInt64(out: Buffer, value: number, at: number): void {
  out.writeUInt32BE(Math.floor(value / 0x100000000), at);
  out.writeUInt32BE(value >>> 0, at + 4);
}

/** Reads a u64; values beyond 2^53 come back as Infinity so range checks refuse them. */
export function readUInt64(buffer: Uint8Array, at: number): number {
  const view = Buffer.isBuffer(buffer)
    ? buffer
    : Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const high = view.readUInt32BE(at);
  const low = view.readUInt32BE(at + 4);
  if (high >= 0x200000) return Number.POSITIVE_INFINITY;
  return high * 0x100000000 + low;
}

export { SIMPLE_REPLY_SIZE, STRUCTURED_HEADER_SIZE };
