#!/usr/bin/env node
import { formatBytes, parseSize } from "@r3map/core";
import { Command, Option } from "commander";
import { parseCount, parseDuration } from "./options.js";
import { closeOnSignals } from "./shutdown.js";
import { startTapisk } from "./tapisk.js";

const say = (text: string) => process.stderr.write(`tapisk: ${text}\n`);

const examples = `
Examples:
  # A real drive: fixed 4 KiB records, SCSI-2 logical block addresses (once per drive)
  mt -f /dev/nst0 setblk 4096 && stsetoptions /dev/nst0 scsi2logical
  tapisk --drive /dev/nst0 --size 500MiB --index tapisk.db --cache tapisk.img
  mkfs.ext4 /dev/loop0 && mount /dev/loop0 /mnt    # the device tapisk printed

  # No drive: a simulated tape in a file (with a 2 s seek, as a real drive has)
  tapisk --drive 'sim:/var/tmp/tape.img?block-size=4096&seek-ms=2000' --size 64MiB \\
    --index /var/tmp/tapisk.db --cache /var/tmp/tapisk.img

  # As a file, pushing every 30 s; or read-only
  tapisk --drive /dev/nst0 --size 500MiB --index tapisk.db --cache tapisk.img --as file --push-interval 30s
  tapisk --drive /dev/nst0 --size 500MiB --index tapisk.db --cache tapisk.img --read-only

SIGINT or SIGTERM pushes every change to the tape and exits; a second signal exits at once. The cache
(--cache, and its chunk state in <cache>.state) survives restarts, clean or killed: the next start
reads nothing from tape that the cache holds and pushes what was not pushed yet. Keep the index with
the tape: without it the data on the tape cannot be found.`;

const program = new Command()
  .name("tapisk")
  .description("Expose a tape drive as a block device or a file, with a local cache that survives restarts.")
  .requiredOption(
    "--drive <device>",
    "tape device (/dev/nst0) or simulated tape (sim:/path/tape.img?block-size=4096&seek-ms=0)",
  )
  .requiredOption("--size <bytes>", "device size (e.g. 500MiB)")
  .requiredOption("--index <file>", "index file (LMDB): where each block is on the tape")
  .requiredOption("--cache <file>", "local cache file")
  .option("--state <file>", "where the cache's chunk state persists (default: <cache>.state)")
  .addOption(new Option("--as <kind>", "block device or file").choices(["path", "file"]).default("path"))
  .option("--pull-workers <n>", "background pull workers (0: read from tape only what is touched)", "1")
  .option("--push-workers <n>", "concurrent pushes to the tape", "1")
  .option("--push-interval <duration>", "time between background pushes (5m, 30s, 1m30s)", "5m")
  .option("--read-only", "refuse writes (EROFS); the tape is opened read-only")
  .option("--mount-point <dir>", "an empty directory for the FUSE mount (default: a temporary one)")
  .option("--json", "print the device as JSON on stdout once it is ready")
  .addHelpText("after", examples);

interface CliOptions {
  drive: string;
  size: string;
  index: string;
  cache: string;
  state?: string;
  as: "path" | "file";
  pullWorkers: string;
  pushWorkers: string;
  pushInterval: string;
  readOnly?: boolean;
  mountPoint?: string;
  json?: boolean;
}

async function main(): Promise<void> {
  program.parse();
  const options = program.opts<CliOptions>();
  const tapisk = await startTapisk({
    drive: options.drive,
    size: parseSize(options.size),
    index: options.index,
    cache: options.cache,
    ...(options.state ? { state: options.state } : {}),
    as: options.as,
    pullWorkers: parseCount(options.pullWorkers, "--pull-workers"),
    pushWorkers: parseCount(options.pushWorkers, "--push-workers", 1),
    pushIntervalMs: parseDuration(options.pushInterval),
    readOnly: options.readOnly === true,
    ...(options.mountPoint ? { mountPoint: options.mountPoint } : {}),
  });
  // Before announcing the device: a signal sent as soon as the announcement is read must close it gracefully.
  closeOnSignals(() => tapisk.close(), say);
  const { mount, backend } = tapisk;
  const progress = await mount.progress();
  if (options.json) {
    process.stdout.write(
      `${JSON.stringify({ path: mount.path, size: mount.size, blockSize: backend.blockSize, readOnly: backend.readOnly })}\n`,
    );
  }
  say(
    `${backend.tape.name} (${backend.blockSize}-byte blocks) is ${mount.path}: ${formatBytes(mount.size)}${options.readOnly ? ", read-only" : ""}; ` +
      `${progress?.chunksLocal ?? 0} blocks cached, ${progress?.dirtyChunks ?? 0} to push`,
  );
  let last = 0;
  mount.on("progress", (p) => {
    const now = Date.now();
    if (now - last < 1000) return;
    last = now;
    const head = backend.counters;
    say(
      `${p.chunksLocal}/${p.chunksTotal} blocks cached, ${formatBytes(p.bytesPulled)} read from and ${formatBytes(p.bytesPushed)} pushed to tape, ` +
        `${p.dirtyChunks} dirty, ${head.seeks} seeks`,
    );
  });
  mount.on("error", (error) => say(`background: ${error instanceof Error ? error.message : String(error)}`));
}

main().catch((error: unknown) => {
  say(error instanceof Error ? error.message : String(error));
  process.exit(1);
});
