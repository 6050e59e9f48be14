/**
 * A tape drive as its ioctls see it: fixed-size records, a head at a block
 * number, an end of data after the last record written. Two implementations:
 * `DriveTape` (a real /dev/nst* over MTIO) and `SimulatedTape` (a file that
 * follows the same rules, with a cost per seek and per record, for tests and
 * benchmarks on machines without a tape driver).
 */
export interface Tape {
  /** What the user named: `/dev/nst0`, `sim:/var/tmp/tape.img`. */
  readonly name: string;
  /** Bytes per record (MTIOCGET); 0 when the drive is in variable-block mode. */
  readonly blockSize: number;
  /** Writes are refused. */
  readonly readOnly: boolean;
  /** MTIOCPOS: the block under the head. */
  tell(): Promise<number>;
  /** MTSEEK: moves the head to block `position`. */
  seek(position: number): Promise<void>;
  /**
   * MTEOM: moves the head to the end of data. Resolves with the block number
   * there and how many of the blocks before it are data records (file marks,
   * which a drive counts as blocks too, excluded).
   */
  seekEndOfData(): Promise<{ position: number; dataRecords: number }>;
  /**
   * MTFSR: moves the head forward over `count` records without reading them
   * — at streaming speed, with no locate (a seek makes a drive stop and
   * reposition; spacing over a few records is far cheaper).
   */
  skipRecords(count: number): Promise<void>;
  /** Reads the record under the head into `record` (`blockSize` bytes); the head moves on by one. */
  readRecord(record: Uint8Array): Promise<void>;
  /** Writes `record` (`blockSize` bytes) under the head; the data now ends after it. */
  writeRecord(record: Uint8Array): Promise<void>;
  /** Makes the records written so far durable on the medium (flushes the drive's buffer). */
  flush(): Promise<void>;
  close(): Promise<void>;
}
