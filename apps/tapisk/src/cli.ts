#!/usr/bin/env node
import {
  addExamples,
  closeOnSignals,
  countOption,
  createProgram,
  durationOption,
  type Output,
  outputFor,
  packageVersion,
  runCli,
  sizeOption,
} from "@r3map/cli-kit";
import { formatBytes, type Progress } from "@r3map/core";
import { type Command, Option } from "commander";
import { startTapisk } from "./tapisk.js";

interface CliOptions {
  drive: string;
  size: number;
  index: string;
  cache: string;
  state?: string;
  as: "path" | "file";
  pullWorkers: number;
  pushWorkers: number;
  /** Milliseconds. */
  pushInterval: number;
  readOnly?: boolean;
  mountPoint?: string;
  json?: boolean;
}

const program = createProgram({
  name: "tapisk",
  description:
    "Expose a tape drive as a block device or a file, with a local cache that survives restarts. SIGINT or SIGTERM pushes every change to the tape and exits; a second signal exits at once (what was not pushed stays in the cache and is pushed by the next start). Keep the index with the tape: without it the data on the tape cannot be found.",
  version: packageVersion(import.meta.url),
})
  .requiredOption(
    "--drive <device>",
    "tape device (/dev/nst0), or a simulated tape: sim:/path/tape.img?block-size=4096&seek-ms=0&seek-ms-per-block=0&record-ms=0&log=/path/ops.log",
  )
  .addOption(sizeOption("--size <bytes>", "device size (e.g. 500MiB)", { min: 1 }).makeOptionMandatory())
  .requiredOption("--index <file>", "index file (LMDB): where each block is on the tape")
  .requiredOption("--cache <file>", "local cache file")
  .option("--state <file>", "where the cache's chunk state persists (default: <cache>.state)")
  .addOption(new Option("--as <kind>", "a block device or a file").choices(["path", "file"]).default("path"))
  .addOption(
    countOption(
      "--pull-workers <n>",
      "background pull workers; 0 reads from tape only what is touched",
      {},
      "1",
    ),
  )
  .addOption(countOption("--push-workers <n>", "concurrent pushes to the tape", { min: 1 }, "1"))
  .addOption(
    durationOption(
      "--push-interval <duration>",
      "time between background pushes (30s, 5m, 1m30s)",
      { minMs: 1 },
      "5m",
    ),
  )
  .option("--read-only", "refuse writes (the device is write-protected); the tape is opened read-only")
  .option("--mount-point <dir>", "an empty directory for the FUSE mount (default: a temporary one)")
  .option("--json", "write NDJSON events (start, progress, warning, error, done) to stdout")
  .action((options: CliOptions, self: Command) => run(options, outputFor(self)));

addExamples(program, [
  {
    what: "Expose a real drive (set up once with mt and stsetoptions, below) as /dev/loopN",
    line: "tapisk --drive /dev/nst0 --size 500MiB --index tapisk.db --cache tapisk.img",
  },
  {
    what: "No drive: a simulated tape in a file, whose seeks cost 2 s as a real drive's do",
    line: "tapisk --drive 'sim:/var/tmp/tape.img?block-size=4096&seek-ms=2000' --size 64MiB --index /var/tmp/tapisk.db --cache /var/tmp/tapisk.img",
  },
  {
    what: "As a file, pushing every 30 s, two pull workers",
    line: "tapisk --drive /dev/nst0 --size 500MiB --index tapisk.db --cache tapisk.img --as file --push-interval 30s --pull-workers 2",
  },
  {
    what: "Read-only, with NDJSON events on stdout",
    line: "tapisk --drive /dev/nst0 --size 500MiB --index tapisk.db --cache tapisk.img --read-only --json",
  },
]);
program.addHelpText(
  "after",
  `
A real drive needs fixed-size records and logical block addresses (once per drive):
    $ mt -f /dev/nst0 setblk 4096
    $ stsetoptions /dev/nst0 scsi2logical
`,
);

async function run(options: CliOptions, output: Output): Promise<void> {
  const tapisk = await startTapisk({
    drive: options.drive,
    size: options.size,
    index: options.index,
    cache: options.cache,
    ...(options.state ? { state: options.state } : {}),
    as: options.as,
    pullWorkers: options.pullWorkers,
    pushWorkers: options.pushWorkers,
    pushIntervalMs: options.pushInterval,
    readOnly: options.readOnly === true,
    ...(options.mountPoint ? { mountPoint: options.mountPoint } : {}),
  });
  const { mount, backend } = tapisk;
  // Before announcing the device: a signal sent as soon as the announcement is read must close it gracefully.
  closeOnSignals(async () => {
    await tapisk.close();
    output.done({ path: mount.path, ...backend.counters }, `closed: everything is on ${backend.tape.name}`);
  }, output);
  const blockSize = backend.blockSize;
  const progress = await mount.progress();
  output.start(
    { path: mount.path, size: mount.size, blockSize, readOnly: backend.readOnly, drive: backend.tape.name },
    `${backend.tape.name} (${blockSize}-byte blocks) is ${mount.path}: ${formatBytes(mount.size)}${backend.readOnly ? ", read-only" : ""}; ` +
      `${progress?.chunksLocal ?? 0} blocks cached, ${progress?.dirtyChunks ?? 0} to push`,
  );
  const report = (p: Progress) =>
    output.progress({
      label: "cached",
      done: Math.min(mount.size, p.chunksLocal * blockSize),
      total: mount.size,
      fields: { ...p, seeks: backend.counters.seeks },
    });
  mount.on("progress", report);
  if (progress) report(progress);
  mount.on("error", (error) =>
    output.warning(`background: ${error instanceof Error ? error.message : String(error)}`, {
      code: (error as { code?: unknown }).code,
    }),
  );
}

await runCli(program);
