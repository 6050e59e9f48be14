import * as net from "node:net";
import { deferred, isR3mapError } from "@r3map/core";
import { patternBytes, waitFor } from "@r3map/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { ByteReader } from "../src/byte-reader.js";
import { connectNbd } from "../src/index.js";
import { CMD, IHAVEOPT, INFO, NBD_MAGIC, OPT, REP, REPLY_TYPE, SIMPLE_REPLY_MAGIC } from "../src/protocol.js";
import { optionReply, writeSimpleReply, writeStructuredHeader } from "../src/wire.js";

/**
 * Our client against scripted servers: an honest fixed-newstyle negotiation,
 * then whatever the script does with the requests — lie, truncate, stall, or
 * answer a byte at a time. Exercises the reply receiver, which reads READ
 * data straight into the caller's buffer.
 */

const SIZE = 1024 * 1024;
const SOURCE = patternBytes(SIZE, 11);

interface Request {
  command: number;
  cookie: number;
  offset: number;
  length: number;
}

type Script = (socket: net.Socket, next: () => Promise<Request>) => Promise<void>;

const servers: net.Server[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

/** Starts a server that negotiates honestly (structured replies when `structured`) and then runs `script`. */
async function scripted(script: Script, structured = true): Promise<number> {
  const server = net.createServer(async (socket) => {
    socket.on("error", () => {});
    const reader = new ByteReader(socket);
    const greeting = Buffer.alloc(18);
    greeting.writeBigUInt64BE(NBD_MAGIC, 0);
    greeting.writeBigUInt64BE(IHAVEOPT, 8);
    greeting.writeUInt16BE(3, 16);
    socket.write(greeting);
    try {
      await reader.take(4);
      for (;;) {
        const header = await reader.take(16);
        const option = header.readUInt32BE(8);
        await reader.take(header.readUInt32BE(12));
        if (option === OPT.GO) {
          const info = Buffer.alloc(12);
          info.writeUInt16BE(INFO.EXPORT, 0);
          info.writeUInt32BE(SIZE, 6);
          info.writeUInt16BE(1, 10); // HAS_FLAGS
          socket.write(optionReply(option, REP.INFO, info));
          socket.write(optionReply(option, REP.ACK));
          break;
        }
        const accepted = option === OPT.STRUCTURED_REPLY && structured;
        socket.write(optionReply(option, accepted ? REP.ACK : REP.ERR_UNSUP));
      }
      const next = async (): Promise<Request> => {
        const header = await reader.take(28);
        const request = {
          command: header.readUInt16BE(6),
          cookie: header.readUInt32BE(12),
          offset: Number(header.readBigUInt64BE(16)),
          length: header.readUInt32BE(24),
        };
        if (request.command === CMD.WRITE) await reader.take(request.length);
        return request;
      };
      await script(socket, next);
    } catch {
      socket.destroy();
    }
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as net.AddressInfo).port;
}

/** A complete data chunk for `request` (structured), or a simple reply with its data. */
function dataReply(request: Request, structured: boolean): Buffer {
  const data = SOURCE.subarray(request.offset, request.offset + request.length);
  if (!structured) {
    const head = Buffer.alloc(16);
    writeSimpleReply(head, 0, 0, request.cookie);
    return Buffer.concat([head, data]);
  }
  const head = Buffer.alloc(28);
  writeStructuredHeader(head, 1, REPLY_TYPE.OFFSET_DATA, 0, request.cookie, 8 + request.length);
  head.writeBigUInt64BE(BigInt(request.offset), 20);
  return Buffer.concat([head, data]);
}

describe("client against scripted servers", () => {
  it.each([true, false])(
    "reads correctly when replies arrive a few bytes at a time (structured: %s)",
    async (structured) => {
      const port = await scripted(async (socket, next) => {
        socket.setNoDelay(true);
        for (;;) {
          const reply = dataReply(await next(), structured);
          // Splits across headers and data, so reads alternate between staging and the destination.
          // Each piece is handed to the kernel before the next is written, so they leave one by one.
          for (let at = 0; at < reply.length; at += 7) {
            await new Promise((resolve) => socket.write(reply.subarray(at, at + 7), resolve));
          }
        }
      }, structured);
      const client = await connectNbd({ port, structuredReplies: structured });
      const back = new Uint8Array(3000);
      await client.readAt(back, 5000);
      expect(Buffer.compare(back, SOURCE.subarray(5000, 8000))).toBe(0);
      await client.close();
    },
  );

  it("reads correctly when several replies arrive in one segment, out of order", async () => {
    const port = await scripted(async (socket, next) => {
      const requests = [await next(), await next(), await next()];
      socket.write(Buffer.concat(requests.reverse().map((request) => dataReply(request, true))));
    });
    const client = await connectNbd({ port });
    const targets = [0, 1, 2].map(() => new Uint8Array(4096));
    await Promise.all(targets.map((target, i) => client.readAt(target, i * 8192)));
    for (const [i, target] of targets.entries()) {
      expect(Buffer.compare(target, SOURCE.subarray(i * 8192, i * 8192 + 4096))).toBe(0);
    }
    await client.close();
  });

  it("rejects a data chunk outside the requested range with ERR_PROTOCOL", async () => {
    const port = await scripted(async (socket, next) => {
      const request = await next();
      const reply = Buffer.alloc(28 + 16);
      writeStructuredHeader(reply, 1, REPLY_TYPE.OFFSET_DATA, 0, request.cookie, 8 + 16);
      reply.writeBigUInt64BE(BigInt(SIZE * 2), 20);
      socket.write(reply);
    });
    const client = await connectNbd({ port, retry: { attempts: 0 } });
    const error = await client.readAt(new Uint8Array(16), 0).catch((e: unknown) => e);
    expect(isR3mapError(error, "ERR_PROTOCOL")).toBe(true);
    await client.close();
  });

  it("rejects a reply with a bad magic or for a cookie nobody sent, with ERR_PROTOCOL", async () => {
    for (const lie of ["magic", "cookie"] as const) {
      const port = await scripted(async (socket, next) => {
        const request = await next();
        const reply = Buffer.alloc(16);
        writeSimpleReply(reply, 0, 0, lie === "cookie" ? request.cookie + 1000 : request.cookie);
        if (lie === "magic") reply.writeUInt32BE(SIMPLE_REPLY_MAGIC ^ 1, 0);
        socket.write(reply);
      });
      const client = await connectNbd({ port, retry: { attempts: 0 } });
      const error = await client.writeAt(new Uint8Array(16), 0).catch((e: unknown) => e);
      expect(isR3mapError(error, "ERR_PROTOCOL"), `${lie}: ${String(error)}`).toBe(true);
      expect(String(error)).toMatch(lie === "magic" ? /bad reply magic/ : /unknown cookie/);
      await client.close();
    }
  });

  it("reports a reply cut off in its data as a truncated frame", async () => {
    const port = await scripted(async (socket, next) => {
      const reply = dataReply(await next(), true);
      socket.end(reply.subarray(0, reply.length / 2));
    });
    const client = await connectNbd({ port, retry: { attempts: 0 } });
    const error = await client.readAt(new Uint8Array(64 * 1024), 0).catch((e: unknown) => e);
    expect(isR3mapError(error, "ERR_PROTOCOL")).toBe(true);
    expect(String(error)).toMatch(/truncated/);
    await client.close();
  });

  it("times out a reply that stalls in its data and writes nothing into the buffer afterwards", async () => {
    const released = deferred();
    let clientLeft = false;
    const port = await scripted(async (socket, next) => {
      socket.once("close", () => {
        clientLeft = true;
      });
      const reply = dataReply(await next(), true);
      socket.write(reply.subarray(0, 28 + 4096)); // header and the first page
      await released.promise;
      socket.write(reply.subarray(28 + 4096)); // the rest, after the client gave up
    });
    const client = await connectNbd({ port, timeoutMs: 300, retry: { attempts: 0 } });
    const target = new Uint8Array(64 * 1024);
    const error = await client.readAt(target, 0).catch((e: unknown) => e);
    expect(isR3mapError(error, "ERR_TIMEOUT")).toBe(true);
    const snapshot = Buffer.from(target);
    released.resolve();
    // The connection was ended (the server saw it close), so the late bytes never reached the caller's buffer.
    await waitFor(() => clientLeft, "the client to end the stalled connection");
    expect(Buffer.compare(target, snapshot)).toBe(0);
    await client.close();
  });
});
