#!/usr/bin/env node
// A complete CLI on @r3map/cli-kit: hashes a file (or its first --limit bytes) in
// --chunk-size pieces with progress, NDJSON events with --json, one-line errors,
// and a graceful stop at the first SIGINT/SIGTERM.
//   node packages/cli-kit/examples/hash.mjs /usr/bin/node --chunk-size 64KiB --json
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import {
  addExamples,
  closeOnSignals,
  createProgram,
  outputFor,
  packageVersion,
  runCli,
  sizeOption,
} from "@r3map/cli-kit";

const program = createProgram({
  name: "hash",
  description: "Print the SHA-256 of a file.",
  version: packageVersion(import.meta.url),
});
const command = program
  .command("sha256")
  .argument("<file>", "the file to hash")
  .addOption(
    sizeOption("--chunk-size <bytes>", "bytes read at once", { min: 4096, max: 64 * 1024 ** 2 }, "1MiB"),
  )
  .addOption(sizeOption("--limit <bytes>", "hash only the first bytes", { min: 1 }))
  .option("--json", "NDJSON events on stdout")
  .action(async (file, options, self) => {
    const output = outputFor(self);
    const handle = await open(file);
    let stopped = false;
    closeOnSignals(async () => {
      stopped = true;
    }, output);
    const size = Math.min((await handle.stat()).size, options.limit ?? Number.MAX_SAFE_INTEGER);
    output.start({ file, size }, `hashing ${file}`);
    const hash = createHash("sha256");
    const buffer = Buffer.alloc(options.chunkSize);
    let done = 0;
    while (done < size && !stopped) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, size - done), done);
      hash.update(buffer.subarray(0, bytesRead));
      done += bytesRead;
      output.progress({ label: "hashed", done, total: size });
    }
    await handle.close();
    output.done({ sha256: hash.digest("hex"), bytes: done }, stopped ? "stopped early" : undefined);
  });
addExamples(command, [{ what: "Hash node itself", line: "hash sha256 /usr/bin/node" }]);

await runCli(program);
