import * as net from "node:net";
import { ByteReader } from "../src/byte-reader.js";
import { INFO, OPT, REP } from "../src/protocol.js";
import { lengthPrefixed, optionRequest, requestHeader } from "../src/wire.js";

/** A hand-driven NBD client for sending malformed or hostile traffic in tests. */
export class RawClient {
  constructor(
    readonly socket: net.Socket,
    readonly reader: ByteReader,
  ) {}

  static async connect(port: number): Promise<RawClient> {
    const socket = net.connect(port, "127.0.0.1");
    socket.on("error", () => {});
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return new RawClient(socket, new ByteReader(socket));
  }

  /** Greeting and flags, then GO into `name`; optionally with structured replies. */
  static async open(port: number, name: string, structured = false): Promise<RawClient> {
    const raw = await RawClient.connect(port);
    await raw.reader.take(18);
    raw.socket.write(Buffer.from([0, 0, 0, 3]));
    if (structured) {
      raw.socket.write(optionRequest(OPT.STRUCTURED_REPLY));
      await raw.optionReply();
    }
    raw.socket.write(
      optionRequest(OPT.GO, Buffer.concat([lengthPrefixed(name), Buffer.from([0, 1, 0, INFO.BLOCK_SIZE])])),
    );
    for (;;) {
      const reply = await raw.optionReply();
      if (reply.type === REP.ACK) return raw;
      if (reply.type !== REP.INFO) throw new Error(`GO failed with reply 0x${reply.type.toString(16)}`);
    }
  }

  async optionReply(): Promise<{ type: number; data: Buffer }> {
    const header = await this.reader.take(20);
    return { type: header.readUInt32BE(12), data: await this.reader.take(header.readUInt32BE(16)) };
  }

  send(command: number, offset: number, length: number, cookie = 1, flags = 0, payload?: Uint8Array): void {
    this.socket.write(requestHeader(command, flags, 0, cookie, offset, length));
    if (payload) this.socket.write(payload);
  }

  /** A simple reply: error and cookie; reads `dataLength` bytes of data when it succeeded. */
  async simpleReply(dataLength = 0): Promise<{ error: number; cookie: number; data: Buffer }> {
    const header = await this.reader.take(16);
    const error = header.readUInt32BE(4);
    const data = error === 0 ? await this.reader.take(dataLength) : Buffer.alloc(0);
    return { error, cookie: header.readUInt32BE(12), data };
  }

  /** One structured chunk. */
  async chunk(): Promise<{ flags: number; type: number; cookie: number; payload: Buffer }> {
    const header = await this.reader.take(20);
    return {
      flags: header.readUInt16BE(4),
      type: header.readUInt16BE(6),
      cookie: header.readUInt32BE(12),
      payload: await this.reader.take(header.readUInt32BE(16)),
    };
  }

  /** Resolves when the server has closed the connection. */
  closed(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed || this.reader.failure) return resolve();
      this.socket.once("close", () => resolve());
      this.socket.resume();
    });
  }
}
