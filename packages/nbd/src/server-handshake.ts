import type { Duplex } from "node:stream";
import * as tls from "node:tls";
import { ByteReader } from "./byte-reader.js";
import {
  BASE_ALLOCATION,
  CLIENT_FIXED_NEWSTYLE,
  CLIENT_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  INFO,
  MAX_STRING,
  NBD_MAGIC,
  OPT,
  REP,
} from "./protocol.js";
import type { ConnectionBudget } from "./reply-budget.js";
import type { ServedExport } from "./served-export.js";
import { lengthPrefixed, optionReply, writeUInt64 } from "./wire.js";

/** The context id we hand out for `base:allocation`. */
export const BASE_ALLOCATION_ID = 1;
/** Option payloads larger than this end the connection (no valid option comes close). */
const MAX_OPTION_LENGTH = 1024 * 1024;

export interface HandshakeConfig {
  lookup(name: string): ServedExport | undefined;
  exports(): ServedExport[];
  tls: tls.SecureContext | undefined;
  tlsOptions: { requestCert?: boolean; rejectUnauthorized?: boolean };
  tlsRequired: boolean;
  /** When set, every option is refused with NBD_REP_ERR_POLICY and this message. */
  refusal?: string;
  highWater: number;
  /** Buffers for request payloads that arrive in several chunks. */
  allocate: (size: number) => Buffer;
  /** Options one negotiation may send; a client sending more is cut off (a hard disconnect). */
  maxOptions: number;
  /** Unsent replies (of this connection only): no further option is read while they are over budget. */
  budget: ConnectionBudget;
}

export interface Negotiated {
  stream: Duplex;
  reader: ByteReader;
  served: ServedExport;
  structured: boolean;
  /** Set when the client selected `base:allocation` for this export. */
  blockStatus: boolean;
}

/** Thrown to end negotiation; the socket is then destroyed. */
export class HandshakeEnd extends Error {}

/**
 * The server side of fixed-newstyle negotiation. Resolves with the chosen
 * export, or undefined when the client aborted; throws HandshakeEnd (or a
 * stream error) when the connection must be dropped.
 */
export async function serverHandshake(
  socket: Duplex,
  config: HandshakeConfig,
): Promise<Negotiated | undefined> {
  let stream: Duplex = socket;
  let reader = new ByteReader(stream, config.highWater, config.allocate);
  const greeting = Buffer.allocUnsafe(18);
  greeting.writeBigUInt64BE(NBD_MAGIC, 0);
  greeting.writeBigUInt64BE(IHAVEOPT, 8);
  greeting.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
  stream.write(greeting);

  const clientFlags = (await reader.take(4)).readUInt32BE(0);
  if ((clientFlags & ~(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES)) !== 0) {
    throw new HandshakeEnd(`client sent unknown handshake flags 0x${clientFlags.toString(16)}`);
  }
  const fixed = (clientFlags & CLIENT_FIXED_NEWSTYLE) !== 0;
  const noZeroes = (clientFlags & CLIENT_NO_ZEROES) !== 0;
  let secure = false;
  let structured = false;
  let meta: { exportName: string; selected: boolean } | undefined;

  // Replies count against the connection's budget until the kernel has them,
  // so a client that sends options and never reads the answers is held back.
  const reply = (option: number, type: number, data?: Uint8Array) => {
    const frame = optionReply(option, type, data);
    config.budget.take(frame.length);
    stream.write(frame, () => config.budget.give(frame.length));
  };
  const fail = (option: number, type: number, message: string) =>
    reply(option, type, Buffer.from(message.slice(0, MAX_STRING), "utf8"));

  for (let options = 1; ; options++) {
    await config.budget.room(0);
    const header = await reader.take(16);
    if (header.readBigUInt64BE(0) !== IHAVEOPT) throw new HandshakeEnd("bad option magic");
    const option = header.readUInt32BE(8);
    const length = header.readUInt32BE(12);
    if (length > MAX_OPTION_LENGTH)
      throw new HandshakeEnd(`option ${option} has an oversized payload (${length} bytes)`);
    if (options > config.maxOptions) {
      // The spec lets a server hang up on a client it believes is a denial of service.
      throw new HandshakeEnd(`the client sent more than ${config.maxOptions} options in one negotiation`);
    }
    const data = await reader.take(length);

    if (config.refusal !== undefined) {
      if (option === OPT.EXPORT_NAME) throw new HandshakeEnd(config.refusal);
      if (option === OPT.ABORT) return abort(stream, option);
      fail(option, REP.ERR_POLICY, config.refusal);
      continue;
    }
    if (config.tlsRequired && !secure && option !== OPT.STARTTLS && option !== OPT.ABORT) {
      if (option === OPT.EXPORT_NAME) throw new HandshakeEnd("TLS is required: EXPORT_NAME before STARTTLS");
      fail(option, REP.ERR_TLS_REQD, "this server requires TLS: negotiate STARTTLS first (use nbds://)");
      continue;
    }
    if (!fixed && option !== OPT.EXPORT_NAME)
      throw new HandshakeEnd("non-fixed newstyle clients may only send EXPORT_NAME");

    switch (option) {
      case OPT.EXPORT_NAME: {
        const served = config.lookup(data.toString("utf8"));
        if (!served) throw new HandshakeEnd(`unknown export "${data.toString("utf8")}"`);
        const out = Buffer.alloc(noZeroes ? 10 : 134);
        writeUInt64(out, served.size, 0);
        out.writeUInt16BE(served.transmissionFlags(structured), 8);
        stream.write(out);
        return {
          stream,
          reader,
          served,
          structured,
          blockStatus: meta?.selected === true && meta.exportName === served.name,
        };
      }
      case OPT.ABORT:
        return abort(stream, option);
      case OPT.LIST: {
        if (length !== 0) {
          fail(option, REP.ERR_INVALID, "LIST takes no data");
          break;
        }
        for (const served of config.exports()) {
          reply(
            option,
            REP.SERVER,
            Buffer.concat([lengthPrefixed(served.name), Buffer.from(served.description, "utf8")]),
          );
        }
        reply(option, REP.ACK);
        break;
      }
      case OPT.STARTTLS: {
        if (length !== 0) fail(option, REP.ERR_INVALID, "STARTTLS takes no data");
        else if (secure) fail(option, REP.ERR_INVALID, "TLS is already active");
        else if (!config.tls) fail(option, REP.ERR_POLICY, "this server has no TLS certificate configured");
        else {
          // Stop reading plaintext before the ACK: the client's TLS hello follows it.
          const leftover = reader.detach();
          if (leftover.length > 0) throw new HandshakeEnd("client sent data before the STARTTLS reply");
          reply(option, REP.ACK);
          stream = await upgrade(stream, config);
          reader = new ByteReader(stream, config.highWater, config.allocate);
          secure = true;
          structured = false;
          meta = undefined;
        }
        break;
      }
      case OPT.INFO:
      case OPT.GO: {
        const request = parseInfoRequest(data);
        if (!request) {
          fail(option, REP.ERR_INVALID, "malformed INFO/GO request");
          break;
        }
        const served = config.lookup(request.name);
        if (!served) {
          fail(option, REP.ERR_UNKNOWN, `unknown export "${request.name}"; NBD_OPT_LIST shows the exports`);
          break;
        }
        if (option === OPT.GO && served.minimumBlockSize > 1 && !request.infos.includes(INFO.BLOCK_SIZE)) {
          fail(
            option,
            REP.ERR_BLOCK_SIZE_REQD,
            `export "${served.name}" needs ${served.minimumBlockSize}-byte alignment`,
          );
          break;
        }
        sendInfo(reply, option, served, request.infos, structured);
        reply(option, REP.ACK);
        if (option === OPT.GO) {
          return {
            stream,
            reader,
            served,
            structured,
            blockStatus: meta?.selected === true && meta.exportName === served.name,
          };
        }
        break;
      }
      case OPT.STRUCTURED_REPLY:
        if (length !== 0) fail(option, REP.ERR_INVALID, "STRUCTURED_REPLY takes no data");
        else if (structured) fail(option, REP.ERR_INVALID, "structured replies are already negotiated");
        else {
          structured = true;
          reply(option, REP.ACK);
        }
        break;
      case OPT.LIST_META_CONTEXT:
      case OPT.SET_META_CONTEXT: {
        const request = parseMetaRequest(data);
        if (!structured) {
          if (option === OPT.SET_META_CONTEXT) meta = undefined;
          fail(option, REP.ERR_INVALID, "negotiate structured replies before meta contexts");
          break;
        }
        if (!request) {
          if (option === OPT.SET_META_CONTEXT) meta = undefined;
          fail(option, REP.ERR_INVALID, "malformed meta context request");
          break;
        }
        if (!config.lookup(request.exportName)) {
          if (option === OPT.SET_META_CONTEXT) meta = undefined;
          fail(option, REP.ERR_UNKNOWN, `unknown export "${request.exportName}"`);
          break;
        }
        const listing = option === OPT.LIST_META_CONTEXT;
        const matches =
          (listing && request.queries.length === 0) ||
          request.queries.some((query) => query === BASE_ALLOCATION || (listing && query === "base:"));
        const id = listing ? 0 : BASE_ALLOCATION_ID;
        if (matches) reply(option, REP.META_CONTEXT, Buffer.concat([u32(id), Buffer.from(BASE_ALLOCATION)]));
        if (!listing) meta = { exportName: request.exportName, selected: matches };
        reply(option, REP.ACK);
        break;
      }
      default:
        fail(option, REP.ERR_UNSUP, `option ${option} is not supported`);
    }
  }
}

function abort(stream: Duplex, option: number): undefined {
  stream.end(optionReply(option, REP.ACK));
  return undefined;
}

function sendInfo(
  reply: (option: number, type: number, data?: Uint8Array) => void,
  option: number,
  served: ServedExport,
  infos: number[],
  structured: boolean,
): void {
  const exportInfo = Buffer.allocUnsafe(12);
  exportInfo.writeUInt16BE(INFO.EXPORT, 0);
  writeUInt64(exportInfo, served.size, 2);
  exportInfo.writeUInt16BE(served.transmissionFlags(structured), 10);
  reply(option, REP.INFO, exportInfo);
  if (infos.includes(INFO.NAME))
    reply(option, REP.INFO, Buffer.concat([u16(INFO.NAME), Buffer.from(served.name)]));
  if (infos.includes(INFO.DESCRIPTION) && served.description !== "") {
    reply(option, REP.INFO, Buffer.concat([u16(INFO.DESCRIPTION), Buffer.from(served.description)]));
  }
  // Sent whether asked or not (the spec allows it): clients learn our limits.
  const sizes = Buffer.allocUnsafe(14);
  sizes.writeUInt16BE(INFO.BLOCK_SIZE, 0);
  sizes.writeUInt32BE(served.minimumBlockSize, 2);
  sizes.writeUInt32BE(served.preferredBlockSize, 6);
  sizes.writeUInt32BE(served.maximumBlockSize, 10);
  reply(option, REP.INFO, sizes);
}

function parseInfoRequest(data: Buffer): { name: string; infos: number[] } | undefined {
  if (data.length < 6) return undefined;
  const nameLength = data.readUInt32BE(0);
  if (nameLength > MAX_STRING || 4 + nameLength + 2 > data.length) return undefined;
  const name = data.toString("utf8", 4, 4 + nameLength);
  const count = data.readUInt16BE(4 + nameLength);
  if (data.length !== 4 + nameLength + 2 + count * 2) return undefined;
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(4 + nameLength + 2 + i * 2));
  return { name, infos };
}

function parseMetaRequest(data: Buffer): { exportName: string; queries: string[] } | undefined {
  if (data.length < 8) return undefined;
  const nameLength = data.readUInt32BE(0);
  if (nameLength > MAX_STRING || 4 + nameLength + 4 > data.length) return undefined;
  const exportName = data.toString("utf8", 4, 4 + nameLength);
  let at = 4 + nameLength;
  const count = data.readUInt32BE(at);
  at += 4;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return undefined;
    const length = data.readUInt32BE(at);
    at += 4;
    if (length > MAX_STRING || at + length > data.length) return undefined;
    queries.push(data.toString("utf8", at, at + length));
    at += length;
  }
  return at === data.length ? { exportName, queries } : undefined;
}

function upgrade(stream: Duplex, config: HandshakeConfig): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = new tls.TLSSocket(stream, {
      isServer: true,
      secureContext: config.tls!,
      requestCert: config.tlsOptions.requestCert ?? false,
      rejectUnauthorized: config.tlsOptions.rejectUnauthorized ?? false,
    });
    const onError = (error: Error) => reject(new HandshakeEnd(`TLS handshake failed: ${error.message}`));
    secure.once("error", onError);
    secure.once("secure", () => {
      secure.off("error", onError);
      // Node sets `authorized` only on sockets a tls.Server made, never on one made like this
      // (STARTTLS): ask OpenSSL for its verdict on the client's certificate as tls.Server does.
      const verdict = config.tlsOptions.requestCert
        ? ((secure as unknown as { _handle?: { verifyError(): Error | null } })._handle?.verifyError() ??
          null)
        : null;
      if (config.tlsOptions.requestCert && config.tlsOptions.rejectUnauthorized !== false && verdict) {
        secure.destroy();
        reject(new HandshakeEnd(`TLS client certificate rejected: ${verdict.message}`));
        return;
      }
      resolve(secure);
    });
  });
}

function u16(value: number): Buffer {
  const out = Buffer.allocUnsafe(2);
  out.writeUInt16BE(value, 0);
  return out;
}

function u32(value: number): Buffer {
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE(value, 0);
  return out;
}
