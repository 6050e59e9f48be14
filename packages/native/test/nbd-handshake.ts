/**
 * Just enough of the NBD newstyle handshake (NBD_OPT_GO) to hand a socket to
 * the kernel client in tests.
 */
import type * as net from "node:net";

const OPTS_MAGIC = 0x49484156454f5054n; // "IHAVEOPT"
const REPLY_MAGIC = 0x0003e889045565a9n;
const NBD_OPT_GO = 7;
const NBD_REP_ACK = 1;
const NBD_REP_INFO = 3;
const NBD_INFO_EXPORT = 0;

function reader(socket: net.Socket) {
  let buffered = Buffer.alloc(0);
  let waiting: (() => void) | undefined;
  let failure: Error | undefined;
  const onData = (data: Buffer) => {
    buffered = Buffer.concat([buffered, data]);
    waiting?.();
  };
  const onEnd = () => {
    failure = new Error("NBD server closed the connection during the handshake");
    waiting?.();
  };
  socket.on("data", onData).on("end", onEnd).on("error", onEnd);
  return {
    async read(length: number): Promise<Buffer> {
      while (buffered.length < length) {
        if (failure !== undefined) throw failure;
        await new Promise<void>((resolve) => {
          waiting = resolve;
        });
      }
      const out = buffered.subarray(0, length);
      buffered = buffered.subarray(length);
      return out;
    },
    release() {
      socket.off("data", onData).off("end", onEnd).off("error", onEnd);
      socket.pause();
    },
  };
}

/** Negotiates `exportName`; returns its size and transmission flags. The socket is left paused, ready for the kernel. */
export async function negotiateExport(
  socket: net.Socket,
  exportName = "",
): Promise<{ size: number; flags: number }> {
  const r = reader(socket);
  try {
    const greeting = await r.read(18);
    if (greeting.toString("latin1", 0, 16) !== "NBDMAGICIHAVEOPT")
      throw new Error("not a newstyle NBD server");
    const serverFlags = greeting.readUInt16BE(16);
    const clientFlags = Buffer.alloc(4);
    clientFlags.writeUInt32BE(serverFlags & 0b11); // FIXED_NEWSTYLE | NO_ZEROES, as offered
    const name = Buffer.from(exportName);
    const option = Buffer.alloc(16 + 4 + name.length + 2);
    option.writeBigUInt64BE(OPTS_MAGIC, 0);
    option.writeUInt32BE(NBD_OPT_GO, 8);
    option.writeUInt32BE(4 + name.length + 2, 12);
    option.writeUInt32BE(name.length, 16);
    name.copy(option, 20);
    socket.write(Buffer.concat([clientFlags, option]));
    let size = -1;
    let flags = 0;
    for (let replies = 0; replies < 64; replies++) {
      const header = await r.read(20);
      if (header.readBigUInt64BE(0) !== REPLY_MAGIC) throw new Error("bad NBD option reply magic");
      const type = header.readUInt32BE(12);
      const data = await r.read(header.readUInt32BE(16));
      if ((type & 0x80000000) !== 0)
        throw new Error(`NBD_OPT_GO refused (${type >>> 0}): ${data.toString()}`);
      if (type === NBD_REP_INFO && data.readUInt16BE(0) === NBD_INFO_EXPORT) {
        size = Number(data.readBigUInt64BE(2));
        flags = data.readUInt16BE(10);
      }
      if (type === NBD_REP_ACK) {
        if (size < 0) throw new Error("server did not send NBD_INFO_EXPORT");
        return { size, flags };
      }
    }
    throw new Error("too many NBD option replies");
  } finally {
    r.release();
  }
}
