import { R3mapError } from "@r3map/core";
import { TapeDrive } from "@r3map/native";
import type { Tape } from "./tape.js";

/**
 * A real tape drive (`/dev/nst0`: the non-rewinding device, so closing does
 * not rewind) over MTIO: MTIOCGET for the block size, MTIOCPOS, MTSEEK,
 * MTEOM, and one read(2)/write(2) per record, each on a native thread.
 * Positions are the drive's logical block addresses (set the st driver to
 * SCSI-2 logical addressing: `stsetoptions scsi2logical`), in which file
 * marks count as blocks.
 */
export class DriveTape implements Tape {
  private constructor(
    readonly name: string,
    readonly blockSize: number,
    readonly readOnly: boolean,
    readonly drive: TapeDrive,
  ) {}

  static async open(path: string, options: { readOnly?: boolean } = {}): Promise<DriveTape> {
    const drive = await TapeDrive.open(path, { readOnly: options.readOnly ?? false });
    try {
      const blockSize = await drive.blockSize();
      return new DriveTape(path, blockSize, options.readOnly ?? false, drive);
    } catch (error) {
      await drive.close();
      throw error;
    }
  }

  tell(): Promise<number> {
    return this.drive.position();
  }

  seek(position: number): Promise<void> {
    return this.drive.seek(position);
  }

  async seekEndOfData(): Promise<{ position: number; dataRecords: number }> {
    await this.drive.endOfMedia();
    const position = await this.drive.position();
    // At the end of data the file number is the count of file marks before it.
    const { fileNumber } = await this.drive.status();
    return { position, dataRecords: Math.max(0, position - Math.max(0, fileNumber)) };
  }

  skipRecords(count: number): Promise<void> {
    return this.drive.operation("forwardRecord", count);
  }

  async readRecord(record: Uint8Array): Promise<void> {
    const read = await this.drive.read(record);
    if (read === record.length) return;
    throw new R3mapError(
      "ERR_IO",
      read === 0
        ? `${this.name}: a file mark or the end of data where a record was expected`
        : `${this.name}: read a record of ${read} bytes, expected ${record.length}: the tape was written with another block size`,
    );
  }

  async writeRecord(record: Uint8Array): Promise<void> {
    const written = await this.drive.write(record);
    if (written !== record.length) {
      throw new R3mapError(
        "ERR_NO_SPACE",
        `${this.name}: wrote ${written} of ${record.length} bytes: the tape is full (early warning)`,
      );
    }
  }

  /** WRITE FILEMARKS with a count of 0: the drive writes its buffer to the medium. */
  async flush(): Promise<void> {
    if (!this.readOnly) await this.drive.writeFileMarks(0);
  }

  close(): Promise<void> {
    return this.drive.close();
  }
}
