import * as fs from "node:fs";
import { fromSystemError, R3mapError } from "@r3map/core";
import { type Database, open, type RootDatabase } from "lmdb";

/** What an index records about the layout it describes; reopening with another layout is refused. */
export interface TapeIndexLayout {
  /** The tape's record size. */
  blockSize: number;
  /** The device's size in bytes. */
  size: number;
}

interface Meta extends TapeIndexLayout {
  /** The highest tape position any entry points at, -1 before the first. */
  highestPosition: number;
}

/**
 * Where each block of the device lives on the tape: block number → tape
 * position, in an LMDB file (the original used bbolt). Entries are added in
 * batches, each batch one transaction written in tape order, and only after
 * the records it names were flushed to the tape — so a crash at any point
 * leaves an index that points at records the tape holds (the newest writes
 * may be missing from it, never the other way round). Reads are synchronous
 * lookups in LMDB's memory map; commits are synchronous too (one fsync each),
 * on the calling thread, never the libuv threadpool.
 */
export class TapeIndex {
  #meta: Meta;

  private constructor(
    readonly path: string,
    readonly existed: boolean,
    readonly readOnly: boolean,
    private readonly root: RootDatabase,
    private readonly blocks: Database<number, number>,
    private readonly metaDb: Database<Meta, string>,
    layout: TapeIndexLayout,
  ) {
    const stored = metaDb.get("layout");
    if (stored && (stored.blockSize !== layout.blockSize || stored.size !== layout.size)) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `the index ${path} describes a ${stored.size}-byte device in ${stored.blockSize}-byte tape blocks, ` +
          `not ${layout.size} bytes in ${layout.blockSize}-byte blocks: pass the --size it was made with, and set the drive's block size back (mt setblk ${stored.blockSize})`,
      );
    }
    this.#meta = stored ?? { ...layout, highestPosition: -1 };
    if (!stored && !readOnly) metaDb.putSync("layout", this.#meta);
  }

  /** Opens the index at `path`, creating it when it does not exist (not when read-only); `existed` tells which. */
  static open(path: string, layout: TapeIndexLayout, options: { readOnly?: boolean } = {}): TapeIndex {
    const readOnly = options.readOnly ?? false;
    const existed = fs.existsSync(path);
    if (!existed && readOnly) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `the index ${path} does not exist, and a read-only run does not create one: pass the index written with this tape (--index)`,
        { errno: "ENOENT" },
      );
    }
    let root: RootDatabase | undefined;
    try {
      root = open({ path, maxDbs: 2, readOnly, cache: false });
      const blocks = root.openDB<number, number>({ name: "blocks", encoding: "ordered-binary" });
      const metaDb = root.openDB<Meta, string>({ name: "meta", encoding: "msgpack" });
      return new TapeIndex(path, existed, readOnly, root, blocks, metaDb, layout);
    } catch (error) {
      void root?.close();
      if (error instanceof R3mapError) throw error;
      throw fromSystemError(error, `cannot open the tape index ${path}`);
    }
  }

  /** The tape position of `block`, or undefined when it was never written. */
  get(block: number): number | undefined {
    return this.blocks.get(block);
  }

  /** The highest tape position an entry points at (-1: none). */
  get highestPosition(): number {
    return this.#meta.highestPosition;
  }

  /** Blocks with an entry. */
  get count(): number {
    return this.blocks.getCount();
  }

  /** Adds `entries` ([block, position], in tape order) in one durable transaction. */
  commit(entries: ReadonlyArray<readonly [block: number, position: number]>): void {
    if (entries.length === 0) return;
    if (this.readOnly) throw new R3mapError("ERR_READ_ONLY", `the index ${this.path} was opened read-only`);
    let highest = this.#meta.highestPosition;
    for (const [, position] of entries) highest = Math.max(highest, position);
    const meta = { ...this.#meta, highestPosition: highest };
    this.root.transactionSync(() => {
      for (const [block, position] of entries) this.blocks.putSync(block, position);
      this.metaDb.putSync("layout", meta);
    });
    this.#meta = meta;
  }

  close(): Promise<void> {
    return this.root.close();
  }
}
