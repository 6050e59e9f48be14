import * as http2 from "node:http2";
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { ReadAtArgsSchema, WriteAtArgsSchema } from "../src/gen/mount/v1/backend_pb.js";
import { ReadStreamRequestSchema } from "../src/gen/r3map/v1/r3map_pb.js";

/** Paths of the calls hostile tests send by hand. */
export const PATH = {
  readAt: "/com.pojtinger.felicitas.r3map.mount.v1.Backend/ReadAt",
  writeAt: "/com.pojtinger.felicitas.r3map.mount.v1.Backend/WriteAt",
  readStream: "/r3map.v1.BackendService/ReadStream",
} as const;

/** A message of `schema` encoded as protobuf. */
export function encode<S extends DescMessage>(schema: S, init: MessageInitShape<S>): Buffer {
  return Buffer.from(toBinary(schema, create(schema, init)));
}

export const readAt = (length: number, offset = 0) =>
  encode(ReadAtArgsSchema, { Off: BigInt(offset), Length: length });
export const writeAt = (data: Uint8Array, offset = 0) =>
  encode(WriteAtArgsSchema, { Off: BigInt(offset), P: data });
export const readStream = (length: number, chunkSize = 0) =>
  encode(ReadStreamRequestSchema, { offset: 0n, length: BigInt(length), chunkSize });

/** gRPC, gRPC-web and Connect-streaming framing: flags, length, message. */
export function envelope(message: Uint8Array, flags = 0): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = flags;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

export const GRPC = { "content-type": "application/grpc", te: "trailers" };
export const CONNECT_UNARY = { "content-type": "application/proto", "connect-protocol-version": "1" };
export const CONNECT_STREAM = {
  "content-type": "application/connect+proto",
  "connect-protocol-version": "1",
};

export interface Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

/** Sends one request and reads the whole answer. */
export function exchange(
  session: http2.ClientHttp2Session,
  path: string,
  headers: Record<string, string>,
  body: Uint8Array,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": path, ...headers });
    const chunks: Buffer[] = [];
    let answer: Omit<Answer, "body"> = { status: 0, headers: {}, trailers: {} };
    stream.on("response", (received) => {
      answer = { ...answer, status: Number(received[":status"]), headers: received };
    });
    stream.on("trailers", (trailers) => {
      answer.trailers = trailers;
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", reject);
    stream.on("close", () => {
      if (answer.status === 0) reject(new Error(`stream closed without an answer (code ${stream.rstCode})`));
      else resolve({ ...answer, body: Buffer.concat(chunks) });
    });
    stream.end(body);
  });
}

/** The gRPC status of an answer: from its trailers, or its headers for a trailers-only answer. */
export function grpcStatus(answer: Answer): number {
  return Number(answer.trailers["grpc-status"] ?? answer.headers["grpc-status"]);
}

/**
 * Opens a call whose answer is never read (the stream stays paused, so the
 * client never gives the server flow-control credit beyond the first 64 KiB).
 */
export function unread(
  session: http2.ClientHttp2Session,
  path: string,
  headers: Record<string, string>,
  body: Uint8Array,
): http2.ClientHttp2Stream {
  const stream = session.request({ ":method": "POST", ":path": path, ...headers });
  stream.on("error", () => {});
  stream.pause();
  stream.end(body);
  return stream;
}

/** An h2c connection that reports its failures to nobody (hostile tests cut them on purpose). */
export async function connectH2(baseUrl: string): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(baseUrl);
  session.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  return session;
}
