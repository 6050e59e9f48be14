import {
  create,
  type DescMessage,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import fc from "fast-check";
import { ReadAtArgsSchema, SyncArgsSchema, WriteAtArgsSchema } from "../../src/gen/mount/v1/backend_pb.js";
import {
  BlockStatusRequestSchema,
  GetInfoRequestSchema,
  ReadStreamRequestSchema,
  TrimRequestSchema,
  WatchProgressRequestSchema,
  WriteZeroesRequestSchema,
} from "../../src/gen/r3map/v1/r3map_pb.js";

/**
 * Generators of what a hostile Connect, gRPC or gRPC-web client sends: calls
 * to every method (and to none), well-formed messages with boundary values,
 * malformed and truncated ones, lying envelopes, odd content types and
 * headers; some answers read to the end, some cut off, some never read.
 *
 * Writes stay away from the protected start of the resource, which the fuzz
 * test reads back after every case; Trim and WriteZeroes also aim at it with
 * ranges the server must refuse (past the end).
 */

export interface Target {
  size: number;
  protectedBytes: number;
  /** The server's per-call limit. */
  maxRequestBytes: number;
}

export interface Call {
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  /** `all`: read the answer to its end; `cut`: reset the stream once it is answered; `never`: never read. */
  reading: "all" | "cut" | "never";
}

export interface ConnectCase {
  calls: Call[];
}

const BACKEND = "/com.pojtinger.felicitas.r3map.mount.v1.Backend/";
const SERVICE = "/r3map.v1.BackendService/";

function encode<S extends DescMessage>(schema: S, init: MessageInitShape<S>): Buffer {
  return Buffer.from(toBinary(schema, create(schema, init)));
}

const int64 = fc.oneof(
  { weight: 4, arbitrary: fc.bigInt({ min: 0n, max: 1n << 27n }) },
  { weight: 1, arbitrary: fc.constantFrom(-1n, 1n << 53n, (1n << 63n) - 1n, -(1n << 63n)) },
  { weight: 1, arbitrary: fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }) },
);
const uint64 = fc.oneof(
  { weight: 4, arbitrary: fc.bigInt({ min: 0n, max: 1n << 27n }) },
  { weight: 1, arbitrary: fc.constantFrom(1n << 53n, (1n << 64n) - 1n) },
);

interface Method {
  path: string;
  streaming: boolean;
  message: fc.Arbitrary<Buffer>;
  /** For a method that writes: the range a message of it writes, if it parses. */
  writes?: (message: Buffer) => [offset: bigint, length: bigint] | undefined;
}

/** The range a Trim or WriteZeroes request covers, if the bytes parse as one. */
function rangeWritten(schema: typeof TrimRequestSchema | typeof WriteZeroesRequestSchema) {
  return (bytes: Buffer): [bigint, bigint] | undefined => {
    const message = parsed(schema, bytes);
    return message && [message.offset, message.length];
  };
}

function parsed<S extends DescMessage>(schema: S, bytes: Buffer): MessageShape<S> | undefined {
  try {
    return fromBinary(schema, bytes);
  } catch {
    return undefined;
  }
}

function methods(target: Target): Method[] {
  const { size, protectedBytes, maxRequestBytes: cap } = target;
  // Mostly small: an answer of `cap` bytes is 32 MiB to encode and move.
  const length = fc.oneof(
    { weight: 30, arbitrary: fc.integer({ min: 0, max: 65536 }) },
    { weight: 1, arbitrary: fc.constantFrom(-1, cap, cap + 1, 0x7fffffff, -0x80000000) },
  );
  const writable = fc.bigInt({ min: BigInt(protectedBytes), max: BigInt(size) });
  const range = fc.oneof(
    { weight: 3, arbitrary: fc.tuple(writable, fc.bigInt({ min: 0n, max: 1n << 20n })) },
    // Aimed at the protected region, past the end: refused.
    {
      weight: 1,
      arbitrary: fc.tuple(
        fc.bigInt({ min: 0n, max: BigInt(protectedBytes) }),
        fc.constant(BigInt(size) + 1n),
      ),
    },
    { weight: 1, arbitrary: fc.tuple(uint64, uint64) },
  );
  return [
    {
      path: `${BACKEND}ReadAt`,
      streaming: false,
      message: fc.tuple(int64, length).map(([Off, Length]) => encode(ReadAtArgsSchema, { Off, Length })),
    },
    {
      path: `${BACKEND}WriteAt`,
      streaming: false,
      message: fc
        .tuple(
          fc.oneof(
            { weight: 4, arbitrary: writable },
            { weight: 1, arbitrary: fc.constantFrom(-1n, BigInt(size), 1n << 62n) },
          ),
          fc.oneof(
            { weight: 20, arbitrary: fc.integer({ min: 0, max: 65536 }) },
            { weight: 1, arbitrary: fc.constant(1 << 20) },
          ),
        )
        .map(([Off, n]) => encode(WriteAtArgsSchema, { Off, P: new Uint8Array(n).fill(0x5a) })),
      writes: (bytes) => {
        const message = parsed(WriteAtArgsSchema, bytes);
        return message && [message.Off, BigInt(message.P.length)];
      },
    },
    { path: `${BACKEND}Sync`, streaming: false, message: fc.constant(encode(SyncArgsSchema, {})) },
    { path: `${SERVICE}GetInfo`, streaming: false, message: fc.constant(encode(GetInfoRequestSchema, {})) },
    {
      path: `${SERVICE}Trim`,
      streaming: false,
      message: range.map(([offset, length]) => encode(TrimRequestSchema, { offset, length })),
      writes: rangeWritten(TrimRequestSchema),
    },
    {
      path: `${SERVICE}WriteZeroes`,
      streaming: false,
      message: range.map(([offset, length]) => encode(WriteZeroesRequestSchema, { offset, length })),
      writes: rangeWritten(WriteZeroesRequestSchema),
    },
    {
      path: `${SERVICE}BlockStatus`,
      streaming: false,
      message: fc
        .tuple(uint64, uint64)
        .map(([offset, length]) => encode(BlockStatusRequestSchema, { offset, length })),
    },
    {
      path: `${SERVICE}ReadStream`,
      streaming: true,
      // At most a few thousand pieces: a 1-byte chunk size over megabytes is a million
      // messages, which takes the server (and this test) longer than a case may.
      message: fc
        .tuple(
          uint64,
          fc.oneof(fc.bigInt({ min: 0n, max: 4n << 20n }), uint64),
          fc.oneof(fc.integer({ min: 0, max: 1 << 20 }), fc.constantFrom(cap, cap + 1, 0xffffffff)),
        )
        .map(([offset, length, chunkSize]) => {
          const floor = Number(length > 1n << 32n ? 1n << 20n : length / 4096n);
          return encode(ReadStreamRequestSchema, {
            offset,
            length,
            chunkSize: chunkSize === 0 ? 0 : Math.max(chunkSize, floor),
          });
        }),
    },
    {
      path: `${SERVICE}WatchProgress`,
      streaming: true,
      message: fc
        .integer({ min: 0, max: 0xffffffff })
        .map((intervalMs) => encode(WatchProgressRequestSchema, { intervalMs })),
    },
  ];
}

const JSON_BODIES = ["{}", '{"Length": 16}', '{"offset": "x"}', "[1, 2]", '{"Off": "-1"', "not json"];

function envelope(message: Buffer, flags: number, lie: number | undefined): Buffer {
  const header = Buffer.allocUnsafe(5);
  header[0] = flags;
  header.writeUInt32BE((lie ?? message.length) >>> 0, 1);
  return Buffer.concat([header, message]);
}

/** The message as sent: well-formed, garbage, cut short, or with garbage after it. */
const mangled = (message: Buffer) =>
  fc.oneof(
    { weight: 12, arbitrary: fc.constant(message) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)) },
    { weight: 1, arbitrary: fc.nat(message.length).map((n) => message.subarray(0, n)) },
    {
      weight: 1,
      arbitrary: fc
        .uint8Array({ minLength: 1, maxLength: 16 })
        .map((bytes) => Buffer.concat([message, bytes])),
    },
  );

const framing = fc.record({
  flags: fc.oneof(
    { weight: 20, arbitrary: fc.constant(0) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
  ),
  lie: fc.oneof(
    { weight: 20, arbitrary: fc.constant<number | undefined>(undefined) },
    { weight: 1, arbitrary: fc.constantFrom(0, 1, 64 * 1024 * 1024, 0xffffffff) },
  ),
  repeat: fc.oneof(
    { weight: 20, arbitrary: fc.constant(1) },
    { weight: 1, arbitrary: fc.constantFrom(0, 2) },
  ),
});

const extraHeaders = fc.dictionary(
  fc.constantFrom(
    "grpc-timeout",
    "connect-timeout-ms",
    "grpc-encoding",
    "content-encoding",
    "connect-protocol-version",
    "authorization",
  ),
  fc.oneof(
    fc.constantFrom("1S", "0m", "9999999999H", "gzip", "identity", "1", "Bearer x", ""),
    fc.string({ unit: "grapheme-ascii", maxLength: 12 }),
  ),
  { maxKeys: 2 },
);

function call(target: Target): fc.Arbitrary<Call> {
  // Garbage can happen to be a valid write (random bytes `10 01` are Trim(0, 1)): a body
  // that would change the protected region, and that the server must accept, is dropped.
  const harmless = (method: Method) => (message: Buffer) => {
    const range = method.writes?.(message);
    if (!range) return true;
    const [offset, length] = range;
    const accepted = length > 0n && offset >= 0n && offset + length <= BigInt(target.size);
    return !(accepted && offset < BigInt(target.protectedBytes));
  };
  const known = methods(target).map((method) =>
    fc.tuple(fc.constant(method), method.message.chain(mangled).filter(harmless(method))),
  );
  const unknownPath = fc.oneof(
    fc.constantFrom(
      "/",
      "/r3map.v1.BackendService/Nope",
      "/com.pojtinger.felicitas.r3map.migration.v1.Seeder/ReadAt",
    ),
    fc.string({ unit: "grapheme-ascii", maxLength: 30 }).map((s) => `/${s}`),
  );
  const target_ = fc.oneof(
    { weight: 12, arbitrary: fc.oneof(...known) },
    {
      weight: 1,
      arbitrary: fc.tuple(
        unknownPath.map(
          (path): Method => ({ path, streaming: false, message: fc.constant(Buffer.alloc(0)) }),
        ),
        fc.uint8Array({ maxLength: 32 }).map((bytes) => Buffer.from(bytes)),
      ),
    },
  );
  return fc
    .tuple(
      target_,
      fc.constantFrom("grpc", "grpc-web", "connect", "json", "odd"),
      framing,
      extraHeaders,
      fc.oneof(
        { weight: 6, arbitrary: fc.constant<Call["reading"]>("all") },
        { weight: 1, arbitrary: fc.constantFrom<Call["reading"]>("cut", "never") },
      ),
    )
    .map(([[method, message], protocol, frame, extra, reading]) => {
      const enveloped = () =>
        Buffer.concat(Array.from({ length: frame.repeat }, () => envelope(message, frame.flags, frame.lie)));
      let headers: Record<string, string>;
      let body: Buffer;
      switch (protocol) {
        case "grpc":
          headers = { "content-type": "application/grpc", te: "trailers" };
          body = enveloped();
          break;
        case "grpc-web":
          headers = { "content-type": "application/grpc-web+proto" };
          body = enveloped();
          break;
        case "connect":
          headers = method.streaming
            ? { "content-type": "application/connect+proto", "connect-protocol-version": "1" }
            : { "content-type": "application/proto", "connect-protocol-version": "1" };
          body = method.streaming ? enveloped() : message;
          break;
        case "json":
          // JSON that is never a write to the protected region.
          headers = { "content-type": "application/json" };
          body = Buffer.from(JSON_BODIES[message.length % JSON_BODIES.length]!);
          break;
        default:
          headers = { "content-type": "text/plain" };
          body = message;
      }
      // A stream that never ends on its own is cut once answered.
      const never = method.path.endsWith("WatchProgress") && reading === "all" ? "cut" : reading;
      return { path: method.path, headers: { ...headers, ...extra }, body, reading: never };
    });
}

export function connectCase(target: Target): fc.Arbitrary<ConnectCase> {
  return fc.array(call(target), { minLength: 1, maxLength: 6 }).map((calls) => ({ calls }));
}
