import type { R3mapError } from "@r3map/core";
import { CMD, REPLY_FLAG_DONE, REPLY_TYPE, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC } from "./protocol.js";
import { type ReceiveSink, STAGING_SIZE } from "./socket-input.js";
import { readUInt64 } from "./wire.js";

/** One `base:allocation` descriptor: length and NBD_STATE_* flags. */
export type StatusDescriptor = [length: number, flags: number];

/** What the receiver fills in for a request awaiting its reply. */
export interface AwaitedReply {
  readonly command: number;
  readonly offset: number;
  readonly length: number;
  /** Where READ data goes; undefined discards it (the caller gave up). */
  target: Uint8Array | undefined;
  covered: number;
  error: R3mapError | undefined;
  descriptors: StatusDescriptor[] | undefined;
}

/** The connection, as the receiver sees it. */
export interface ReplyOwner {
  readonly structured: boolean;
  readonly allocationContext: number | undefined;
  /** The request with this cookie; throws for a cookie nobody is waiting for. */
  lookup(high: number, low: number): AwaitedReply;
  /** The last chunk of the reply to `cookie` has arrived. */
  complete(cookie: number, reply: AwaitedReply): void;
  protocolError(message: string): R3mapError;
  remoteError(errno: number, message: string, command: number): R3mapError;
  /** The stream can no longer be parsed; the connection must end. */
  fail(error: Error): void;
  /**
   * Reading was paused to let other work of the event loop run; resume it on
   * a later turn. Only for sockets read through SocketInput.
   */
  yieldReads?(): void;
}

/**
 * Bytes a connection receives before it pauses and lets the event loop take a
 * turn (it resumes from setImmediate). libuv reads a readable socket up to 32
 * times per turn while each read fills its buffer, and READ data is read in
 * pieces as large as the request: a background pull with 32 MiB in flight kept
 * the engine's thread on one socket for the whole window, while a reader's
 * miss waited. Counted across turns: a quiet connection pauses rarely anyway.
 */
const TURN_BUDGET = 256 * 1024;
/** A server that announces more than this for one chunk body is not believed. */
const MAX_CHUNK_BODY = 64 * 1024 * 1024;
const MAGIC = 4;
const SIMPLE_REST = 12;
const CHUNK_HEADER = 16;

/**
 * Turns the reply stream of one connection into completed requests,
 * synchronously, as bytes arrive. Because it always knows what comes next, it
 * can tell the socket where to put it: headers go to a small staging buffer,
 * READ data straight into the caller's destination (see SocketInput). It is
 * also fed plain chunks (TLS streams), then it copies.
 */
export class ReplyReceiver implements ReceiveSink {
  readonly #owner: ReplyOwner;
  readonly #staging = Buffer.allocUnsafe(STAGING_SIZE);
  /** A header or small body being assembled. */
  #small = Buffer.allocUnsafe(64);
  #want = MAGIC;
  #have = 0;
  #then: (bytes: Buffer) => void;
  /** READ data in flight: where it goes (undefined: discarded), how much is left. */
  #payload: Uint8Array | undefined;
  #payloadFilled = 0;
  #payloadLeft = 0;
  #afterPayload: () => void = () => {};
  #given: Uint8Array | undefined;
  #failed = false;
  #turnBytes = 0;
  /** The request whose data is arriving now: its destination may already be handed to the socket. */
  receiving: AwaitedReply | undefined;

  constructor(owner: ReplyOwner) {
    this.#owner = owner;
    this.#then = this.#onMagic;
  }

  /** True when the stream stopped inside a reply (a truncated frame). */
  get midFrame(): boolean {
    return this.#have > 0 || this.#payloadLeft > 0 || this.#want !== MAGIC;
  }

  nextBuffer(): Uint8Array {
    this.#given =
      this.#payloadLeft > 0 && this.#payload
        ? this.#payload.subarray(this.#payloadFilled, this.#payloadFilled + this.#payloadLeft)
        : this.#staging;
    return this.#given;
  }

  received(buffer: Uint8Array, n: number): boolean {
    if (this.#failed) return false;
    try {
      // Read straight into the destination: only account for it.
      if (buffer === this.#given && buffer !== this.#staging && this.#payloadLeft > 0) this.#advance(n);
      else this.feed(buffer.subarray(0, n));
    } catch (error) {
      this.#failed = true;
      this.#owner.fail(error instanceof Error ? error : new Error(String(error)));
      return false;
    }
    this.#turnBytes += n;
    if (this.#turnBytes < TURN_BUDGET || !this.#owner.yieldReads) return true;
    this.#turnBytes = 0;
    this.#owner.yieldReads();
    return false;
  }

  /** Parses bytes that arrived somewhere else (copying READ data into place). */
  feed(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length && !this.#failed) {
      if (this.#payloadLeft > 0) {
        const n = Math.min(this.#payloadLeft, bytes.length - at);
        this.#payload?.set(bytes.subarray(at, at + n), this.#payloadFilled);
        at += n;
        this.#advance(n);
      } else {
        const n = Math.min(this.#want - this.#have, bytes.length - at);
        this.#small.set(bytes.subarray(at, at + n), this.#have);
        this.#have += n;
        at += n;
        if (this.#have === this.#want) {
          this.#have = 0;
          this.#then(this.#small.subarray(0, this.#want));
        }
      }
    }
  }

  #expect(n: number, then: (bytes: Buffer) => void): void {
    if (this.#small.length < n) this.#small = Buffer.allocUnsafe(n);
    this.#want = n;
    this.#have = 0;
    this.#then = then;
  }

  #nextReply(): void {
    this.#expect(MAGIC, this.#onMagic);
  }

  #receivePayload(reply: AwaitedReply, into: Uint8Array | undefined, n: number, then: () => void): void {
    if (n === 0) {
      then();
      return;
    }
    this.receiving = reply;
    this.#payload = into;
    this.#payloadFilled = 0;
    this.#payloadLeft = n;
    this.#afterPayload = then;
    this.#want = 0; // nothing small is pending while data flows
  }

  #advance(n: number): void {
    this.#payloadFilled += n;
    this.#payloadLeft -= n;
    if (this.#payloadLeft > 0) return;
    this.#payload = undefined;
    this.receiving = undefined;
    this.#afterPayload();
  }

  #onMagic = (bytes: Buffer): void => {
    const magic = bytes.readUInt32BE(0);
    if (magic === SIMPLE_REPLY_MAGIC) this.#expect(SIMPLE_REST, this.#onSimple);
    else if (magic === STRUCTURED_REPLY_MAGIC) {
      if (!this.#owner.structured) throw this.#owner.protocolError("structured reply without negotiation");
      this.#expect(CHUNK_HEADER, this.#onChunk);
    } else throw this.#owner.protocolError(`bad reply magic 0x${magic.toString(16)}`);
  };

  #onSimple = (bytes: Buffer): void => {
    const errno = bytes.readUInt32BE(0);
    const low = bytes.readUInt32BE(8);
    const reply = this.#owner.lookup(bytes.readUInt32BE(4), low);
    const finish = () => {
      this.#owner.complete(low, reply);
      this.#nextReply();
    };
    if (errno !== 0) {
      reply.error = this.#owner.remoteError(errno, "", reply.command);
      finish();
    } else if (reply.command === CMD.READ) {
      if (this.#owner.structured)
        throw this.#owner.protocolError("simple reply to READ after structured replies were negotiated");
      this.#receivePayload(reply, reply.target, reply.length, () => {
        reply.covered = reply.length;
        finish();
      });
    } else if (reply.command === CMD.BLOCK_STATUS) {
      throw this.#owner.protocolError("simple reply to BLOCK_STATUS");
    } else finish();
  };

  #onChunk = (header: Buffer): void => {
    const flags = header.readUInt16BE(0);
    const type = header.readUInt16BE(2);
    const low = header.readUInt32BE(8);
    const length = header.readUInt32BE(12);
    const reply = this.#owner.lookup(header.readUInt32BE(4), low);
    const done = () => {
      if (flags & REPLY_FLAG_DONE) this.#owner.complete(low, reply);
      this.#nextReply();
    };
    const protocol = (message: string) => this.#owner.protocolError(message);
    const within = (offset: number, n: number) =>
      offset >= reply.offset && offset + n <= reply.offset + reply.length && n > 0;
    if (length > MAX_CHUNK_BODY) throw protocol(`reply chunk of ${length} bytes`);

    switch (type) {
      case REPLY_TYPE.NONE:
        if (length !== 0) throw protocol("NONE chunk with a payload");
        done();
        return;
      case REPLY_TYPE.OFFSET_DATA:
        if (reply.command !== CMD.READ || length < 9) throw protocol("unexpected OFFSET_DATA chunk");
        this.#expect(8, (body) => {
          const offset = readUInt64(body, 0);
          const n = length - 8;
          if (!within(offset, n)) throw protocol(`data chunk ${offset}+${n} outside the request`);
          const start = offset - reply.offset;
          this.#receivePayload(reply, reply.target?.subarray(start, start + n), n, () => {
            reply.covered += n;
            done();
          });
        });
        return;
      case REPLY_TYPE.OFFSET_HOLE:
        if (reply.command !== CMD.READ || length !== 12) throw protocol("unexpected OFFSET_HOLE chunk");
        this.#expect(12, (body) => {
          const offset = readUInt64(body, 0);
          const n = body.readUInt32BE(8);
          if (!within(offset, n)) throw protocol(`hole chunk ${offset}+${n} outside the request`);
          reply.target?.fill(0, offset - reply.offset, offset - reply.offset + n);
          reply.covered += n;
          done();
        });
        return;
      case REPLY_TYPE.BLOCK_STATUS:
        if (reply.command !== CMD.BLOCK_STATUS || length < 12 || (length - 4) % 8 !== 0) {
          throw protocol("malformed BLOCK_STATUS chunk");
        }
        this.#expect(length, (body) => {
          if (body.readUInt32BE(0) === this.#owner.allocationContext) {
            const descriptors: StatusDescriptor[] = [];
            for (let at = 4; at < length; at += 8)
              descriptors.push([body.readUInt32BE(at), body.readUInt32BE(at + 4)]);
            if (descriptors.some(([n]) => n === 0)) throw protocol("zero-length block status descriptor");
            reply.descriptors = descriptors;
          }
          done();
        });
        return;
      default:
        if ((type & 0x8000) === 0) throw protocol(`unknown chunk type ${type}`);
        if (length < 6) throw protocol("error chunk too short");
        this.#expect(length, (body) => {
          const errno = body.readUInt32BE(0);
          const messageLength = body.readUInt16BE(4);
          if (6 + messageLength > length) throw protocol("error message longer than its chunk");
          reply.error ??= this.#owner.remoteError(
            errno,
            body.toString("utf8", 6, 6 + messageLength),
            reply.command,
          );
          done();
        });
    }
  };
}
