import type { Readable } from "node:stream";
import { type DescMessage, fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { CallTicket } from "./call-limits.js";

/** How a request body is framed, from its content type. */
type Framing =
  /** gRPC, gRPC-web and Connect streaming: 5-byte envelopes (flags, length) around each message. */
  | "envelopes"
  /** Connect unary: the body is the message. */
  | "whole"
  /** JSON, or anything Connect will refuse itself: passed through as it comes. */
  | "raw";

function framingOf(contentType: string | undefined): Framing {
  const type = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (/^application\/(grpc|grpc-web|connect)(\+proto)?$/.test(type)) return "envelopes";
  if (type === "application/proto") return "whole";
  return "raw";
}

const ENVELOPE_HEADER = 5;

/**
 * A request's body as Connect's handlers read it, guarded:
 *
 * - a binary message is assembled and checked against the method's input type
 *   before Connect parses it, so a malformed one is INVALID_ARGUMENT (Connect
 *   itself calls it INTERNAL);
 * - a message over `readMaxBytes` is RESOURCE_EXHAUSTED as soon as its
 *   envelope (or Content-Length) says so, before it is received;
 * - the bytes count against the call's ticket as they arrive (twice for an
 *   assembled message: Connect copies it once more), so the server's bytes in
 *   flight stay bounded.
 *
 * Whatever the handler did not read is read and dropped by `discardRest()`,
 * so that the client can finish sending and read the answer on a connection
 * that stays usable.
 */
export class RequestBody implements AsyncIterable<Uint8Array> {
  readonly #request: Readable;
  readonly #framing: Framing;
  readonly #input: DescMessage;
  readonly #readMaxBytes: number;
  readonly #ticket: CallTicket | undefined;
  readonly #refusal: ConnectError | undefined;
  readonly #declaredLength: number | undefined;
  #pending: Buffer | undefined;
  #ended = false;
  #failure: Error | undefined;
  #waiting = false;
  #lastProgressAt = Date.now();

  constructor(
    request: Readable & { headers: Record<string, string | string[] | undefined> },
    options: {
      input: DescMessage;
      readMaxBytes: number;
      ticket: CallTicket | undefined;
      /** Set when the call was refused: the handler sees this error instead of the body. */
      refusal?: ConnectError;
    },
  ) {
    this.#request = request;
    this.#framing = framingOf(headerValue(request.headers["content-type"]));
    const length = Number(headerValue(request.headers["content-length"]));
    this.#declaredLength = Number.isSafeInteger(length) && length >= 0 ? length : undefined;
    this.#input = options.input;
    this.#readMaxBytes = options.readMaxBytes;
    this.#ticket = options.ticket;
    this.#refusal = options.refusal;
    request.on("end", () => this.#wake("end"));
    request.on("close", () => this.#wake("close"));
    request.on("error", (error: Error) => {
      this.#failure ??= error;
      this.#wake("error");
    });
    request.on("readable", () => this.#wake("readable"));
  }

  /** The whole body has been received (by the handler or by `discardRest`). */
  get finished(): boolean {
    return this.#ended;
  }

  /** The call waits for the client to send more: a watchdog's concern. */
  get waitingOnClient(): boolean {
    return this.#waiting;
  }

  /** When bytes last arrived. */
  get lastProgressAt(): number {
    return this.#lastProgressAt;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    if (this.#refusal) throw this.#refusal;
    if (this.#framing === "envelopes") yield* this.#envelopes();
    else if (this.#framing === "whole") yield* this.#whole();
    else yield* this.#raw();
  }

  async *#envelopes(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const first = await this.#chunk();
      if (first === undefined) return;
      this.#unread(first);
      const header = await this.#exactly(Buffer.allocUnsafe(ENVELOPE_HEADER), 0);
      const flags = header[0]!;
      const length = header.readUInt32BE(1);
      if (flags !== 0) {
        throw new ConnectError(
          `message flags 0x${flags.toString(16)}: compressed or flagged messages are not accepted`,
          Code.InvalidArgument,
        );
      }
      this.#checkSize(length);
      const envelope = Buffer.allocUnsafe(ENVELOPE_HEADER + length);
      header.copy(envelope);
      await this.#exactly(envelope, ENVELOPE_HEADER, 2);
      this.#validate(envelope.subarray(ENVELOPE_HEADER));
      yield envelope;
    }
  }

  async *#whole(): AsyncGenerator<Uint8Array> {
    const chunks: Buffer[] = [];
    let length = 0;
    if (this.#declaredLength !== undefined) this.#checkSize(this.#declaredLength);
    for (let chunk = await this.#chunk(); chunk !== undefined; chunk = await this.#chunk()) {
      length += chunk.length;
      this.#checkSize(length, "at least ");
      this.#charge(chunk.length * 2);
      chunks.push(chunk);
    }
    const message = Buffer.concat(chunks, length);
    this.#validate(message);
    yield message;
  }

  async *#raw(): AsyncGenerator<Uint8Array> {
    for (let chunk = await this.#chunk(); chunk !== undefined; chunk = await this.#chunk()) {
      this.#charge(chunk.length);
      yield chunk;
    }
  }

  #checkSize(length: number, atLeast = ""): void {
    if (length > this.#readMaxBytes) {
      throw new ConnectError(
        `a message of ${atLeast}${length} bytes is larger than the server's limit of ${this.#readMaxBytes} bytes; split the request`,
        Code.ResourceExhausted,
      );
    }
  }

  #charge(bytes: number): void {
    this.#ticket?.reserve(bytes, "receiving the request");
  }

  #validate(message: Uint8Array): void {
    try {
      fromBinary(this.#input, message);
    } catch (error) {
      throw new ConnectError(
        `the request is not a valid ${this.#input.typeName} message: ${error instanceof Error ? error.message : String(error)}`,
        Code.InvalidArgument,
      );
    }
  }

  /** Fills `target` from `from` on, charging `weight` per byte; a body that ends first is truncated. */
  async #exactly(target: Buffer, from: number, weight = 0): Promise<Buffer> {
    for (let at = from; at < target.length; ) {
      const chunk = await this.#chunk();
      if (chunk === undefined) {
        throw new ConnectError("the request ended in the middle of a message", Code.InvalidArgument);
      }
      const n = Math.min(chunk.length, target.length - at);
      if (weight > 0) this.#charge(n * weight);
      chunk.copy(target, at, 0, n);
      at += n;
      if (n < chunk.length) this.#unread(chunk.subarray(n));
    }
    return target;
  }

  #unread(chunk: Buffer): void {
    this.#pending = chunk;
  }

  /** The next bytes of the body, or undefined at its end. */
  async #chunk(): Promise<Buffer | undefined> {
    if (this.#pending) {
      const chunk = this.#pending;
      this.#pending = undefined;
      return chunk;
    }
    for (;;) {
      const chunk = this.#request.read() as Buffer | null;
      if (chunk !== null) {
        this.#lastProgressAt = Date.now();
        return chunk;
      }
      if (this.#failure) throw new ConnectError(this.#failure.message, Code.Canceled);
      if (this.#ended || this.#request.readableEnded) {
        this.#ended = true;
        return undefined;
      }
      if (this.#request.destroyed) throw new ConnectError("the request was cut off", Code.Canceled);
      await this.#next();
    }
  }

  #wakeWaiter: (() => void) | undefined;

  #next(): Promise<void> {
    this.#waiting = true;
    return new Promise((resolve) => {
      this.#wakeWaiter = () => {
        this.#waiting = false;
        resolve();
      };
    });
  }

  #wake(event: "readable" | "end" | "close" | "error"): void {
    if (event === "end") this.#ended = true;
    const wake = this.#wakeWaiter;
    this.#wakeWaiter = undefined;
    wake?.();
  }

  /**
   * Reads what the handler left of the body and drops it, so the client can
   * finish sending and then read the answer. Rejects when no byte arrives for
   * `stallTimeoutMs`.
   */
  async discardRest(stallTimeoutMs: number): Promise<void> {
    this.#pending = undefined;
    const timer = setInterval(
      () => {
        if (Date.now() - this.#lastProgressAt >= stallTimeoutMs) {
          this.#failure ??= new Error(`the client sent nothing for ${stallTimeoutMs} ms`);
          this.#wake("error");
        }
      },
      Math.max(1, Math.floor(stallTimeoutMs / 4)),
    );
    try {
      while ((await this.#chunk()) !== undefined) {
        // dropped
      }
    } finally {
      clearInterval(timer);
    }
  }
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
