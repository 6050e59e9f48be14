import { randomBytes, randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subject } from "./subject.js";

export function fileSubject(scratch: string): Subject {
  return {
    name: "file",
    raw: "fs.readSync",
    schemes: [],
    concurrency: 1,
    original: { managedMBs: 2372, directMBs: 2081, latencyUs: 155, label: "File" },
    async prepare(size, chunkSize) {
      const file = path.join(scratch, `remote-${randomUUID()}.img`);
      const source = randomBytes(size);
      fs.writeFileSync(file, source);
      const fd = fs.openSync(file, "r");
      return {
        uri: `file://${file}`,
        source,
        readChunk: (chunk, into) => {
          fs.readSync(fd, into, 0, into.length, chunk * chunkSize);
        },
        close: async () => fs.closeSync(fd),
      };
    },
  };
}
