import fc from "fast-check";
import { BASE_ALLOCATION, CMD, CMD_FLAG, IHAVEOPT, INFO, OPT, REQUEST_MAGIC } from "../../src/protocol.js";
import { lengthPrefixed } from "../../src/wire.js";

/**
 * Generators of what a hostile NBD client sends: handshakes (well-formed,
 * malformed and lying options) and transmission-phase requests (any command,
 * flags, offsets and lengths, payloads cut short), as one byte string sent in
 * pieces, the client then either closing its side cleanly or vanishing.
 *
 * Writes stay away from the protected start of the export, where the fuzz
 * test checks the bytes after every case — except writes that the server
 * must refuse (unknown flags, past the end), which aim anywhere: applying one
 * is a bug the check then sees.
 */

export interface Target {
  /** Export size in bytes. */
  size: number;
  /** [0, protectedBytes) must never change. */
  protectedBytes: number;
  /** The server's largest request (its maximum block size). */
  maxBlock: number;
}

export interface NbdCase {
  bytes: Buffer;
  /** Where the byte string is cut into separate writes (offsets into `bytes`). */
  cuts: number[];
  /** `end`: close our side and wait for the server to close; `vanish`: destroy the socket at once. */
  ending: "end" | "vanish";
}

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u16 = fc.integer({ min: 0, max: 0xffff });

function u32be(value: number): Buffer {
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE(value >>> 0, 0);
  return out;
}

function u64be(value: bigint): Buffer {
  const out = Buffer.allocUnsafe(8);
  out.writeBigUInt64BE(BigInt.asUintN(64, value), 0);
  return out;
}

const smallBytes = (max = 64) => fc.uint8Array({ maxLength: max }).map((bytes) => Buffer.from(bytes));
const exportName = fc.oneof(
  { weight: 6, arbitrary: fc.constant("") },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.constant("x".repeat(5000)) }, // longer than the spec allows
);

/** INFO/GO data: name, then requested info types. */
const infoRequest = fc
  .tuple(exportName, fc.array(fc.oneof(fc.constantFrom(...Object.values(INFO)), u16), { maxLength: 6 }))
  .map(([name, infos]) =>
    Buffer.concat([
      lengthPrefixed(name),
      Buffer.from([infos.length >> 8, infos.length & 0xff]),
      ...infos.map((i) => Buffer.from([i >> 8, i & 0xff])),
    ]),
  );

/** LIST/SET_META_CONTEXT data: export name, then queries. */
const metaRequest = fc
  .tuple(
    exportName,
    fc.array(
      fc.oneof(
        fc.constantFrom(BASE_ALLOCATION, "base:", "qemu:dirty-bitmap:x"),
        fc.string({ maxLength: 20 }),
      ),
      { maxLength: 4 },
    ),
  )
  .map(([name, queries]) =>
    Buffer.concat([
      lengthPrefixed(name),
      u32be(queries.length),
      ...queries.map((query) => lengthPrefixed(query)),
    ]),
  );

const optionData = (option: number): fc.Arbitrary<Buffer> => {
  switch (option) {
    case OPT.GO:
    case OPT.INFO:
      return fc.oneof({ weight: 4, arbitrary: infoRequest }, { weight: 1, arbitrary: smallBytes() });
    case OPT.LIST_META_CONTEXT:
    case OPT.SET_META_CONTEXT:
      return fc.oneof({ weight: 4, arbitrary: metaRequest }, { weight: 1, arbitrary: smallBytes() });
    case OPT.EXPORT_NAME:
      return exportName.map((name) => Buffer.from(name));
    default:
      return fc.oneof(
        { weight: 4, arbitrary: fc.constant(Buffer.alloc(0)) },
        { weight: 1, arbitrary: smallBytes() },
      );
  }
};

/** One option: magic (rarely wrong), id (known or any), data, and a length field that may lie. */
const option: fc.Arbitrary<Buffer> = fc
  .oneof({ weight: 8, arbitrary: fc.constantFrom(...Object.values(OPT)) }, { weight: 1, arbitrary: u32 })
  .chain((id) =>
    fc.tuple(
      fc.constant(id),
      optionData(id),
      fc.oneof(
        { weight: 20, arbitrary: fc.constant(IHAVEOPT) },
        { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) },
      ),
      fc.oneof(
        { weight: 12, arbitrary: fc.constant<number | undefined>(undefined) },
        { weight: 1, arbitrary: fc.constantFrom(0, 1, 1024 * 1024, 1024 * 1024 + 1, 0xffffffff) },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 200 }) },
      ),
    ),
  )
  .map(([id, data, magic, lie]) => Buffer.concat([u64be(magic), u32be(id), u32be(lie ?? data.length), data]));

/** Client flags: fixed newstyle with or without NO_ZEROES, rarely anything. */
const clientFlags = fc
  .oneof({ weight: 10, arbitrary: fc.constantFrom(1, 3) }, { weight: 1, arbitrary: u32 })
  .map((flags) => u32be(flags));

/** A negotiation that reaches transmission: optional structured replies and base:allocation, then GO. */
const negotiation = fc
  .tuple(fc.boolean(), fc.boolean(), fc.constantFrom(1, 3))
  .map(([structured, meta, flags]) => {
    const option = (id: number, data: Buffer = Buffer.alloc(0)) =>
      Buffer.concat([u64be(IHAVEOPT), u32be(id), u32be(data.length), data]);
    const parts = [u32be(flags)];
    if (structured) parts.push(option(OPT.STRUCTURED_REPLY));
    if (structured && meta)
      parts.push(
        option(
          OPT.SET_META_CONTEXT,
          Buffer.concat([lengthPrefixed(""), u32be(1), lengthPrefixed(BASE_ALLOCATION)]),
        ),
      );
    parts.push(option(OPT.GO, Buffer.concat([lengthPrefixed(""), Buffer.from([0, 1, 0, INFO.BLOCK_SIZE])])));
    return Buffer.concat(parts);
  });

const commands = Object.values(CMD).filter((command) => command !== CMD.DISC);
const writeClass = new Set<number>([CMD.WRITE, CMD.TRIM, CMD.WRITE_ZEROES]);
const flagBits = Object.values(CMD_FLAG);

function requests(target: Target): fc.Arbitrary<Buffer> {
  // Mostly small: a READ of the maximum block is 32 MiB to send and receive.
  const length = fc.oneof(
    { weight: 40, arbitrary: fc.integer({ min: 0, max: 8192 }) },
    { weight: 4, arbitrary: fc.constantFrom(0, 1, 511, 512, 4096, 65536) },
    { weight: 1, arbitrary: fc.constantFrom(target.maxBlock, target.maxBlock + 1, 0xffffffff) },
    { weight: 1, arbitrary: u32 },
  );
  const anyOffset = fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 0, max: target.size }).map(BigInt) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        BigInt(target.size - 1),
        BigInt(target.size),
        BigInt(target.size + 1),
        2n ** 53n,
        2n ** 63n,
        2n ** 64n - 1n,
      ),
    },
    { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) },
  );
  /** Where a write may land: the unprotected part, or past the end (refused). */
  const writeOffset = (len: number) =>
    fc.oneof(
      {
        weight: 6,
        arbitrary: fc
          .integer({ min: target.protectedBytes, max: Math.max(target.protectedBytes, target.size - len) })
          .map(BigInt),
      },
      { weight: 1, arbitrary: fc.constantFrom(BigInt(target.size), 2n ** 63n, 2n ** 64n - 1n) },
    );
  const flags = fc.oneof(
    { weight: 6, arbitrary: fc.constant(0) },
    { weight: 3, arbitrary: fc.subarray(flagBits).map((bits) => bits.reduce((a, b) => a | b, 0)) },
    { weight: 1, arbitrary: u16 },
  );
  const command = fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(...commands) },
    { weight: 1, arbitrary: u16 },
  );
  const request = fc
    .tuple(
      command,
      flags,
      length,
      fc.oneof({ weight: 30, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
      fc.integer({ min: 0, max: 100 }),
    )
    .chain(([cmd, flg, len, goodMagic, cut]) => {
      // A refused write (an unknown flag) may aim at the protected region: it must change nothing.
      const refusedFlag = writeClass.has(cmd) && (flg & 0x8000) !== 0;
      const offset = !writeClass.has(cmd)
        ? anyOffset
        : refusedFlag
          ? fc.oneof(fc.integer({ min: 0, max: target.protectedBytes }).map(BigInt), anyOffset)
          : writeOffset(len);
      return offset.map((off) => {
        const header = Buffer.allocUnsafe(28);
        header.writeUInt32BE(goodMagic ? REQUEST_MAGIC : 0x25609514, 0);
        header.writeUInt16BE(flg, 4);
        header.writeUInt16BE(cmd, 6);
        header.writeUInt32BE(0, 8); // the cookie: anything
        header.writeUInt32BE(cut, 12);
        u64be(off).copy(header, 16);
        header.writeUInt32BE(len >>> 0, 24);
        if (cmd !== CMD.WRITE) return header;
        // The payload: whole when small, else cut short (the case then ends inside it).
        const sent = len <= 65536 ? len : Math.floor((len / 100) * Math.min(cut, 2));
        return Buffer.concat([header, Buffer.alloc(Math.min(sent, 1024 * 1024), 0x5a)]);
      });
    });
  return fc.array(request, { maxLength: 16 }).map((parts) => Buffer.concat(parts));
}

/** A whole case: a handshake (and whatever follows it), or a clean negotiation and then requests. */
export function nbdCase(target: Target): fc.Arbitrary<NbdCase> {
  const handshake = fc
    .tuple(
      clientFlags,
      fc.array(option, { maxLength: 8 }),
      fc.oneof(fc.constant(Buffer.alloc(0)), requests(target)),
    )
    .map(([flags, options, rest]) => Buffer.concat([flags, ...options, rest]));
  const transmission = fc
    .tuple(negotiation, requests(target))
    .map(([start, rest]) => Buffer.concat([start, rest]));
  return fc
    .tuple(
      fc.oneof(handshake, transmission),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }),
      fc.oneof(
        { weight: 3, arbitrary: fc.constant<"end" | "vanish">("end") },
        { weight: 1, arbitrary: fc.constant<"end" | "vanish">("vanish") },
      ),
    )
    .map(([bytes, fractions, ending]) => ({
      bytes,
      cuts: [...new Set(fractions.map((f) => Math.floor(f * bytes.length)))].sort((a, b) => a - b),
      ending,
    }));
}
