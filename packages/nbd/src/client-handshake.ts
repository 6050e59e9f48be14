import * as net from "node:net";
import type { Duplex } from "node:stream";
import * as tls from "node:tls";
import { fromSystemError, lookupWithoutThreadpool, R3mapError } from "@r3map/core";
import { ByteReader } from "./byte-reader.js";
import { describeTarget, type ResolvedClientOptions } from "./client-options.js";
import {
  BASE_ALLOCATION,
  CLIENT_FIXED_NEWSTYLE,
  CLIENT_NO_ZEROES,
  DEFAULT_MAX_BLOCK,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  INFO,
  NBD_MAGIC,
  OPT,
  OPTION_REPLY_MAGIC,
  REP,
  TF,
} from "./protocol.js";
import { CopyIntoReader, SocketInput } from "./socket-input.js";
import { lengthPrefixed, optionRequest, readUInt64 } from "./wire.js";

/** What negotiation established about the export. */
export interface ExportInfo {
  size: number;
  flags: number;
  minimumBlockSize: number;
  preferredBlockSize: number;
  maximumBlockSize: number;
  structured: boolean;
  /** The server's id for `base:allocation`, when selected. */
  allocationContext: number | undefined;
}

export interface Negotiated {
  stream: Duplex;
  reader: ByteReader;
  /** Set for plain sockets: lets the transmission phase choose where each read lands. */
  input?: SocketInput | undefined;
  info: ExportInfo;
}

/** A connected socket with the reader the handshake uses. */
interface Dialed {
  socket: net.Socket;
  reader: ByteReader;
  input: SocketInput | undefined;
}

interface OptionReply {
  type: number;
  data: Buffer;
}

const OLDSTYLE_MAGIC = 0x00420281861253n;
const MAX_OPTION_REPLY = 16 * 1024 * 1024;

/**
 * Opens the socket (TCP or UNIX) within the connect deadline. Without TLS it
 * is read through a SocketInput (TLS needs node's own reads of the socket).
 */
export function dial(o: ResolvedClientOptions, signal?: AbortSignal): Promise<Dialed> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abandoned(o));
      return;
    }
    // Node asks for the first read's buffer while connecting, before the reader exists; the greeting fits.
    const input = o.tls
      ? undefined
      : new SocketInput({ nextBuffer: () => new Uint8Array(64), received: () => true });
    const onread = input ? { onread: input.onread } : {};
    const socket = o.path
      ? net.connect({ path: o.path, ...onread })
      : // Never getaddrinfo: it runs on the libuv threadpool, which mount readers can exhaust.
        net.connect({
          host: o.host,
          port: o.port,
          noDelay: true,
          lookup: lookupWithoutThreadpool,
          ...onread,
        });
    const reader = new ByteReader(socket);
    if (input) input.sink = new CopyIntoReader(reader);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new R3mapError(
          "ERR_TIMEOUT",
          `connecting to ${describeTarget(o)} took longer than ${o.connectTimeoutMs} ms`,
        ),
      );
    }, o.connectTimeoutMs);
    const onAbort = () => {
      clearTimeout(timer);
      socket.destroy();
      reject(abandoned(o));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.once("connect", () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.off("error", onError);
      resolve({ socket, reader, input });
    });
    const onError = (error: Error) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      const wrapped = fromSystemError(error, `cannot connect to ${describeTarget(o)}`);
      reject(
        wrapped.code === "ERR_IO" || wrapped.code === "ERR_PERMISSION"
          ? new R3mapError("ERR_REMOTE_UNREACHABLE", wrapped.message, {
              cause: error,
              ...(wrapped.errno ? { errno: wrapped.errno } : {}),
            })
          : wrapped,
      );
    };
    socket.once("error", onError);
  });
}

/** One negotiation conversation: sends options and reads their replies. */
class Negotiation {
  constructor(
    public stream: Duplex,
    public reader: ByteReader,
    readonly target: string,
  ) {}

  send(option: number, data?: Uint8Array): void {
    this.stream.write(optionRequest(option, data));
  }

  async reply(option: number): Promise<OptionReply> {
    const header = await this.reader.take(20);
    if (header.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) {
      throw new R3mapError("ERR_PROTOCOL", `${this.target}: bad option reply magic`);
    }
    const replyTo = header.readUInt32BE(8);
    const type = header.readUInt32BE(12);
    const length = header.readUInt32BE(16);
    if (replyTo !== option) {
      throw new R3mapError(
        "ERR_PROTOCOL",
        `${this.target}: reply for option ${replyTo} while waiting for option ${option}`,
      );
    }
    if (length > MAX_OPTION_REPLY)
      throw new R3mapError("ERR_PROTOCOL", `${this.target}: option reply of ${length} bytes`);
    return { type, data: await this.reader.take(length) };
  }

  /** Sends an option that is answered by a single ACK or an error. */
  async simple(option: number, data?: Uint8Array): Promise<OptionReply> {
    this.send(option, data);
    return this.reply(option);
  }
}

function isError(type: number): boolean {
  return (type & 0x80000000) !== 0;
}

function errorText(reply: OptionReply): string {
  return reply.data.length > 0 ? `: ${reply.data.toString("utf8")}` : "";
}

/** Reads the greeting and sends our flags; returns whether the server speaks fixed newstyle and NO_ZEROES. */
async function greet(
  stream: Duplex,
  reader: ByteReader,
  target: string,
): Promise<{ fixed: boolean; noZeroes: boolean }> {
  const hello = await reader.take(16);
  if (hello.readBigUInt64BE(0) !== NBD_MAGIC)
    throw new R3mapError("ERR_PROTOCOL", `${target} is not an NBD server (bad magic)`);
  const second = hello.readBigUInt64BE(8);
  if (second === OLDSTYLE_MAGIC) {
    throw new R3mapError(
      "ERR_NOT_SUPPORTED",
      `${target} speaks oldstyle NBD negotiation, which has no export names; use a newstyle server`,
    );
  }
  if (second !== IHAVEOPT) throw new R3mapError("ERR_PROTOCOL", `${target}: unknown negotiation magic`);
  const serverFlags = (await reader.take(2)).readUInt16BE(0);
  const fixed = (serverFlags & FLAG_FIXED_NEWSTYLE) !== 0;
  const noZeroes = (serverFlags & FLAG_NO_ZEROES) !== 0;
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE((fixed ? CLIENT_FIXED_NEWSTYLE : 0) | (noZeroes ? CLIENT_NO_ZEROES : 0), 0);
  stream.write(out);
  return { fixed, noZeroes };
}

/** Connects and negotiates up to the transmission phase; `signal` abandons it (the client closed). */
export async function clientHandshake(o: ResolvedClientOptions, signal?: AbortSignal): Promise<Negotiated> {
  const dialed = await dial(o, signal);
  const { socket } = dialed;
  const target = describeTarget(o);
  const timer = setTimeout(
    () =>
      socket.destroy(
        new R3mapError("ERR_TIMEOUT", `negotiating with ${target} took longer than ${o.connectTimeoutMs} ms`),
      ),
    o.connectTimeoutMs,
  );
  const onAbort = () => socket.destroy(abandoned(o));
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    return await negotiate(dialed, o, target);
  } catch (error) {
    socket.destroy();
    throw error;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
}

/** A connection given up because the client closed. */
function abandoned(o: ResolvedClientOptions): R3mapError {
  return new R3mapError(
    "ERR_CLOSED",
    `the connection to ${describeTarget(o)} was abandoned: the client closed`,
  );
}

async function negotiate(dialed: Dialed, o: ResolvedClientOptions, target: string): Promise<Negotiated> {
  const n = new Negotiation(dialed.socket, dialed.reader, target);
  const { fixed, noZeroes } = await greet(n.stream, n.reader, target);
  if (!fixed && o.tls)
    throw new R3mapError(
      "ERR_NOT_SUPPORTED",
      `${target} does not speak fixed newstyle, so TLS is impossible`,
    );
  if (o.tls) await startTls(n, o);

  let structured = false;
  let allocationContext: number | undefined;
  if (fixed && o.structuredReplies) {
    const reply = await n.simple(OPT.STRUCTURED_REPLY);
    structured = reply.type === REP.ACK;
    if (reply.type === REP.ERR_TLS_REQD) throw tlsRequired(target);
    if (structured) allocationContext = await selectAllocation(n, o.export);
  }
  const info = fixed ? await go(n, o.export, target) : undefined;
  const resolved = info ?? (await exportName(n, o.export, noZeroes, target));
  return {
    stream: n.stream,
    reader: n.reader,
    input: dialed.input,
    info: { ...resolved, structured, allocationContext },
  };
}

function tlsRequired(target: string): R3mapError {
  return new R3mapError("ERR_PERMISSION", `${target} requires TLS: use an nbds:// URI or the tls option`);
}

async function startTls(n: Negotiation, o: ResolvedClientOptions): Promise<void> {
  const reply = await n.simple(OPT.STARTTLS);
  if (reply.type !== REP.ACK) {
    throw new R3mapError(
      "ERR_NOT_SUPPORTED",
      `${n.target} refused STARTTLS${errorText(reply)}; connect without TLS or configure the server's certificates`,
    );
  }
  n.reader.detach();
  const secure = tls.connect({
    servername: o.path ? undefined : o.host,
    ...o.tls,
    socket: n.stream as net.Socket,
  });
  await new Promise<void>((resolve, reject) => {
    secure.once("secureConnect", () => {
      secure.off("error", onError);
      resolve();
    });
    const onError = (error: Error) =>
      reject(
        new R3mapError("ERR_PERMISSION", `TLS handshake with ${n.target} failed: ${error.message}`, {
          cause: error,
        }),
      );
    secure.once("error", onError);
  });
  n.stream = secure;
  n.reader = new ByteReader(secure);
}

async function selectAllocation(n: Negotiation, name: string): Promise<number | undefined> {
  const query = lengthPrefixed(BASE_ALLOCATION);
  const count = Buffer.allocUnsafe(4);
  count.writeUInt32BE(1, 0);
  n.send(OPT.SET_META_CONTEXT, Buffer.concat([lengthPrefixed(name), count, query]));
  let id: number | undefined;
  for (let replies = 0; replies < 1024; replies++) {
    const reply = await n.reply(OPT.SET_META_CONTEXT);
    if (reply.type === REP.META_CONTEXT && reply.data.length >= 4) {
      if (reply.data.toString("utf8", 4) === BASE_ALLOCATION) id = reply.data.readUInt32BE(0);
    } else if (reply.type === REP.ACK) return id;
    else if (isError(reply.type)) return undefined;
    else
      throw new R3mapError("ERR_PROTOCOL", `${n.target}: unexpected reply ${reply.type} to SET_META_CONTEXT`);
  }
  throw new R3mapError("ERR_PROTOCOL", `${n.target}: endless SET_META_CONTEXT replies`);
}

/** NBD_OPT_GO; undefined when the server does not know GO (then EXPORT_NAME is used). */
async function go(
  n: Negotiation,
  name: string,
  target: string,
): Promise<Omit<ExportInfo, "structured" | "allocationContext"> | undefined> {
  const request = Buffer.concat([
    lengthPrefixed(name),
    Buffer.from([0, 2, 0, INFO.BLOCK_SIZE, 0, INFO.NAME]),
  ]);
  n.send(OPT.GO, request);
  let size: number | undefined;
  let flags = 0;
  let sizes = { minimumBlockSize: 1, preferredBlockSize: 4096, maximumBlockSize: DEFAULT_MAX_BLOCK };
  for (let replies = 0; replies < 1024; replies++) {
    const reply = await n.reply(OPT.GO);
    if (reply.type === REP.INFO) {
      if (reply.data.length < 2) throw new R3mapError("ERR_PROTOCOL", `${target}: empty NBD_REP_INFO`);
      const type = reply.data.readUInt16BE(0);
      if (type === INFO.EXPORT) {
        if (reply.data.length !== 12)
          throw new R3mapError("ERR_PROTOCOL", `${target}: NBD_INFO_EXPORT of ${reply.data.length} bytes`);
        size = readUInt64(reply.data, 2);
        flags = reply.data.readUInt16BE(10);
      } else if (type === INFO.BLOCK_SIZE) {
        if (reply.data.length !== 14)
          throw new R3mapError(
            "ERR_PROTOCOL",
            `${target}: NBD_INFO_BLOCK_SIZE of ${reply.data.length} bytes`,
          );
        sizes = {
          minimumBlockSize: reply.data.readUInt32BE(2),
          preferredBlockSize: reply.data.readUInt32BE(6),
          maximumBlockSize: reply.data.readUInt32BE(10),
        };
      }
      continue;
    }
    if (reply.type === REP.ACK) {
      if (size === undefined || !Number.isSafeInteger(size))
        throw new R3mapError("ERR_PROTOCOL", `${target}: GO succeeded without a usable NBD_INFO_EXPORT`);
      return { size, flags, ...validSizes(sizes, target) };
    }
    if (reply.type === REP.ERR_UNSUP) return undefined;
    if (reply.type === REP.ERR_UNKNOWN) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `${target}: no such export${errorText(reply)} (list the exports with listNbdExports or nbdinfo --list)`,
      );
    }
    if (reply.type === REP.ERR_TLS_REQD) throw tlsRequired(target);
    if (isError(reply.type))
      throw new R3mapError(
        "ERR_REMOTE_FAILED",
        `${target} refused the export (reply 0x${reply.type.toString(16)})${errorText(reply)}`,
      );
    throw new R3mapError("ERR_PROTOCOL", `${target}: unexpected reply ${reply.type} to GO`);
  }
  throw new R3mapError("ERR_PROTOCOL", `${target}: endless GO replies`);
}

function validSizes(
  s: { minimumBlockSize: number; preferredBlockSize: number; maximumBlockSize: number },
  target: string,
) {
  const { minimumBlockSize: min, maximumBlockSize: max } = s;
  if (min < 1 || (min & (min - 1)) !== 0 || min > 65536 || max < min) {
    throw new R3mapError("ERR_PROTOCOL", `${target} advertised impossible block sizes min ${min} max ${max}`);
  }
  return s;
}

async function exportName(
  n: Negotiation,
  name: string,
  noZeroes: boolean,
  target: string,
): Promise<Omit<ExportInfo, "structured" | "allocationContext">> {
  n.send(OPT.EXPORT_NAME, Buffer.from(name, "utf8"));
  let reply: Buffer;
  try {
    reply = await n.reader.take(noZeroes ? 10 : 134);
  } catch (error) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `${target}: the server closed the connection on EXPORT_NAME (unknown export?)`,
      { cause: error },
    );
  }
  const size = readUInt64(reply, 0);
  if (!Number.isSafeInteger(size)) throw new R3mapError("ERR_PROTOCOL", `${target}: impossible export size`);
  return {
    size,
    flags: reply.readUInt16BE(8),
    minimumBlockSize: 1,
    preferredBlockSize: 4096,
    maximumBlockSize: DEFAULT_MAX_BLOCK,
  };
}

/** Lists the server's exports (NBD_OPT_LIST), then aborts negotiation. */
export async function listExports(
  o: ResolvedClientOptions,
): Promise<Array<{ name: string; description: string }>> {
  const { socket, reader } = await dial(o);
  const target = describeTarget(o);
  try {
    const n = new Negotiation(socket, reader, target);
    const { fixed } = await greet(n.stream, n.reader, target);
    if (!fixed)
      throw new R3mapError(
        "ERR_NOT_SUPPORTED",
        `${target} does not speak fixed newstyle, so it cannot list exports`,
      );
    if (o.tls) await startTls(n, o);
    n.send(OPT.LIST);
    const exports: Array<{ name: string; description: string }> = [];
    for (let replies = 0; replies < 100_000; replies++) {
      const reply = await n.reply(OPT.LIST);
      if (reply.type === REP.SERVER) {
        const length = reply.data.length >= 4 ? reply.data.readUInt32BE(0) : Number.POSITIVE_INFINITY;
        if (4 + length > reply.data.length)
          throw new R3mapError("ERR_PROTOCOL", `${target}: malformed NBD_REP_SERVER`);
        exports.push({
          name: reply.data.toString("utf8", 4, 4 + length),
          description: reply.data.toString("utf8", 4 + length),
        });
      } else if (reply.type === REP.ACK) {
        n.send(OPT.ABORT);
        n.stream.end();
        return exports;
      } else if (reply.type === REP.ERR_TLS_REQD) throw tlsRequired(target);
      else throw new R3mapError("ERR_REMOTE_FAILED", `${target} refused to list exports${errorText(reply)}`);
    }
    throw new R3mapError("ERR_PROTOCOL", `${target}: endless LIST replies`);
  } finally {
    socket.destroy();
  }
}

export { TF };
