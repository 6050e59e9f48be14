import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { type Subject, seed } from "./subject.js";

export function directorySubject(scratch: string): Subject {
  return {
    name: "directory",
    raw: "fs.readSync of the chunk file",
    schemes: [],
    concurrency: 1,
    original: { managedMBs: 264, directMBs: 79, latencyUs: 75, label: "Directory" },
    async prepare(size, chunkSize) {
      const dir = path.join(scratch, `chunks-${randomUUID()}`);
      fs.mkdirSync(dir);
      const uri = `dir://${dir}?size=${size}&chunk=${chunkSize}`;
      const source = await seed(uri, size);
      return {
        uri,
        source,
        // Chunk files are named by their byte offset, as DirectoryBackend (and the original) lays them out.
        readChunk: (chunk, into) => {
          const fd = fs.openSync(path.join(dir, String(chunk * chunkSize)), "r");
          try {
            fs.readSync(fd, into, 0, into.length, 0);
          } finally {
            fs.closeSync(fd);
          }
        },
        close: async () => {},
      };
    },
  };
}
