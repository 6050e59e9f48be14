import { MemoryBackend } from "@r3map/core";
import type { Subject } from "./subject.js";

export function memorySubject(): Subject {
  return {
    name: "memory",
    raw: "memcpy",
    schemes: [],
    concurrency: 1,
    original: { managedMBs: 2178, directMBs: 1630, latencyUs: 70, label: "Memory" },
    async prepare(size, chunkSize) {
      // memory: in the engine's worker starts as zeros; the baseline copies zeros from the same kind of backend.
      const memory = new MemoryBackend(size);
      const segment = memory.segments[0]!;
      return {
        uri: `memory:?size=${size}`,
        source: Buffer.alloc(size),
        readChunk: (chunk, into) =>
          into.set(segment.subarray(chunk * chunkSize, chunk * chunkSize + into.length)),
        close: () => memory.close(),
      };
    },
  };
}
