import * as fs from "node:fs";
import * as path from "node:path";
import { patternBytes } from "@r3map/core/testing";
import { describe, expect, it } from "vitest";
import { DriveTape } from "../src/drive-tape.js";
import { TapeBackend } from "../src/tape-backend.js";
import { scratchDirectory } from "./helpers.js";

// A real drive (/dev/nst*) where the kernel has its SCSI tape driver. Reading its status is harmless and
// runs wherever one exists; writing is destructive, so it runs only when TAPISK_TEST_DRIVE names the drive.
const drives = fs.existsSync("/dev") ? fs.readdirSync("/dev").filter((name) => /^nst\d+$/.test(name)) : [];
const found = drives[0] ? `/dev/${drives[0]}` : undefined;
const writable = process.env.TAPISK_TEST_DRIVE;

if (!found) {
  console.warn(
    "tapisk real-drive tests skipped: no SCSI tape drive (/dev/nst*) on this machine (the kernel has no st driver or no drive is attached)",
  );
} else if (!writable) {
  console.warn(
    `tapisk: the write test on ${found} is skipped: set TAPISK_TEST_DRIVE=${found} to allow it to overwrite the tape`,
  );
}

describe("a real tape drive", () => {
  it.skipIf(!found)(`reports a fixed block size and a position (${found ?? "no drive"})`, async () => {
    const tape = await DriveTape.open(found!, { readOnly: true });
    try {
      expect(tape.blockSize, "the drive is in variable-block mode: run mt setblk 4096").toBeGreaterThan(0);
      expect(await tape.tell()).toBeGreaterThanOrEqual(0);
    } finally {
      await tape.close();
    }
  });

  it.skipIf(!writable)(
    `writes blocks, syncs and reads them back in one pass (${writable ?? "TAPISK_TEST_DRIVE unset"})`,
    async () => {
      const dir = scratchDirectory("real-drive");
      const tape = await DriveTape.open(writable!);
      await tape.drive.rewind();
      await tape.drive.operation("erase");
      const block = tape.blockSize;
      const backend = await TapeBackend.open(tape, { size: 64 * block, index: path.join(dir, "tapisk.db") });
      try {
        for (const i of [5, 1, 3]) await backend.writeAt(patternBytes(block, i), i * block);
        await backend.sync();
        const back = new Uint8Array(6 * block);
        await backend.readAt(back, 0);
        for (const i of [5, 1, 3]) {
          expect(Buffer.compare(back.subarray(i * block, (i + 1) * block), patternBytes(block, i))).toBe(0);
        }
        expect(back.subarray(0, block).every((byte) => byte === 0)).toBe(true);
      } finally {
        await backend.close();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
