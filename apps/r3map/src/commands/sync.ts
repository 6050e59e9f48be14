import {
  addExamples,
  closeOnSignals,
  countOption,
  durationOption,
  type Output,
  outputFor,
  readTokens,
  sizeOption,
} from "@r3map/cli-kit";
import { type Backend, formatBytes, openBackend, R3mapError } from "@r3map/core";
import {
  digestChanges,
  openLocalPath,
  remoteSide,
  replicate,
  type SyncReport,
  type SyncSide,
  syncDelta,
} from "@r3map/sync";
import type { Command } from "commander";
import { importSchemes, jsonOption, MIN_CHUNK, schemeOption, tokenFileOption } from "../options.js";
import { withToken } from "../remote-uri.js";

export interface SyncCommandOptions {
  chunkSize: number;
  check?: boolean;
  resize?: boolean;
  /** Milliseconds between rounds of continuous replication (push only). */
  watch?: number;
  concurrency: number;
  tokenFile: string[];
  scheme: string[];
  json?: boolean;
}

type Direction = "push" | "pull";

export function syncCommand(program: Command): void {
  const sync = program
    .command("sync")
    .summary("bring a copy up to date by moving only the chunks that differ (push or pull)")
    .description(
      "Compare per-chunk digests of a local file or block device and a remote, computed where each copy is (a remote served by `r3map serve --connect` hashes its own copy), and move only the chunks that differ. A remote that cannot hash (NBD, S3, Redis, Cassandra) is read here to compare, which the command says.",
    );
  for (const direction of ["push", "pull"] as const) {
    const [first, second] = direction === "push" ? ["<local>", "<remote>"] : ["<remote>", "<local>"];
    const command = sync
      .command(direction)
      .summary(
        direction === "push"
          ? "make the remote equal the local file or block device"
          : "make the local file or block device equal the remote",
      )
      .argument(first, direction === "push" ? "a file or block device" : "remote backend URI")
      .argument(second, direction === "push" ? "remote backend URI" : "a file or block device")
      .addOption(
        sizeOption(
          "--chunk-size <bytes>",
          "the unit compared and moved: 4 KiB (a page) to 1 GiB, a multiple of 4 KiB",
          { min: MIN_CHUNK, max: 1024 ** 3, multipleOf: MIN_CHUNK },
          "4KiB",
        ),
      )
      .option("--check", "verify with BLAKE3 digests of both copies at the end; a mismatch fails (exit 4)")
      .option(
        "--resize",
        direction === "pull"
          ? "make a local file the remote's size first (sizes that differ fail without it)"
          : "sizes that differ fail without it; a remote cannot be resized, so a push still fails, saying so",
      )
      .addOption(
        countOption("--concurrency <n>", "chunk transfers in flight at once", { min: 1, max: 1024 }, "32"),
      )
      .addOption(tokenFileOption())
      .addOption(jsonOption())
      .addOption(schemeOption());
    if (direction === "push") {
      command.addOption(
        durationOption(
          "--watch <duration>",
          "keep pushing what changed every interval (500ms, 5s, 1m) until SIGINT/SIGTERM, then push once more",
          {},
        ),
      );
    }
    command.action((a: string, b: string, options: SyncCommandOptions, self: Command) =>
      direction === "push"
        ? runSync("push", a, b, options, outputFor(self))
        : runSync("pull", b, a, options, outputFor(self)),
    );
    addExamples(
      command,
      direction === "push"
        ? [
            {
              what: "Push a disk image to a copy served over Connect, which hashes its own side; verify at the end",
              line: "r3map sync push disk.img r3map+h2c://127.0.0.1:1337 --check",
            },
            {
              what: "Replicate a file to a standby every 5 s until SIGINT",
              line: "r3map sync push disk.img r3map+h2c://127.0.0.1:1337 --watch 5s",
            },
            {
              what: "Push to an NBD export, reading it here to compare (NBD cannot hash); NDJSON events on stdout",
              line: "r3map sync push disk.img nbd://127.0.0.1:10809/default --json",
            },
          ]
        : [
            {
              what: "Bring a local copy up to date, creating or resizing the file to the remote's size",
              line: "r3map sync pull r3map+h2c://127.0.0.1:1337 copy.img --resize",
            },
          ],
    );
  }
}

/** One sync (or, with --watch, continuous replication) between a local path and a remote. */
export async function runSync(
  direction: Direction,
  localPath: string,
  remoteUri: string,
  options: SyncCommandOptions,
  output: Output,
): Promise<void> {
  await importSchemes(options.scheme);
  const remote = await openBackend(withToken(remoteUri, readTokens({ tokenFiles: options.tokenFile })));
  let local: SyncSide | undefined;
  const stop = new AbortController();
  const closeAll = async () => {
    await local?.backend.close().catch(() => {});
    await remote.close();
  };
  try {
    local = openLocal(direction, localPath, remote, options);
    const remoteCopy = remoteSide(remote, remoteUri);
    if (!remoteCopy.hashesWhereItIs) {
      output.warning(
        `${remoteUri} cannot compute digests of its copy: all ${formatBytes(remote.size)} of it are read here to compare`,
        { fallback: "read-and-compare" },
      );
    }
    const [from, to] = direction === "push" ? [local, remoteCopy] : [remoteCopy, local];
    const running = options.watch
      ? watch(from, to, options, output, stop.signal)
      : once(direction, from, to, options, output, stop.signal);
    // A signal stops the work (a watch pushes once more), then everything closes.
    closeOnSignals(async () => {
      stop.abort(new R3mapError("ERR_ABORTED", "stopped by a signal"));
      await running.catch(() => {});
      await closeAll();
    }, output);
    await running;
  } finally {
    if (!stop.signal.aborted) await closeAll();
  }
}

function openLocal(
  direction: Direction,
  path: string,
  remote: Backend,
  options: SyncCommandOptions,
): SyncSide {
  if (direction === "pull") {
    return openLocalPath(path, {
      writable: true,
      ...(options.resize ? { resizeTo: remote.size, create: true } : {}),
    });
  }
  const local = openLocalPath(path);
  if (options.resize && local.backend.size !== remote.size) {
    void local.backend.close();
    throw new R3mapError(
      "ERR_NOT_SUPPORTED",
      `${path} has ${local.backend.size} bytes and the remote ${remote.size}, and a remote cannot be resized: serve a copy of ${local.backend.size} bytes (or pull with --resize instead)`,
    );
  }
  return local;
}

async function once(
  direction: Direction,
  from: SyncSide,
  to: SyncSide,
  options: SyncCommandOptions,
  output: Output,
  signal: AbortSignal,
): Promise<void> {
  output.start(
    { direction, from: from.name, to: to.name, size: from.backend.size, chunkSize: options.chunkSize },
    `${direction}: ${from.name} → ${to.name} (${formatBytes(from.backend.size)}, ${formatBytes(options.chunkSize)} chunks)`,
  );
  const report = await syncDelta(from, to, {
    chunkSize: options.chunkSize,
    concurrency: options.concurrency,
    check: options.check === true,
    signal,
    onProgress: (p) => {
      if (p.phase === "compare") output.progress({ label: "compared", done: p.done, total: p.total });
    },
  });
  output.done({ ...report }, summary(report));
}

function summary(report: SyncReport): string {
  const moved = `moved ${report.chunksMoved} chunk(s), ${formatBytes(report.bytesMoved)} of ${formatBytes(report.size)}`;
  const compared = report.bothHash
    ? `compared with ${formatBytes(report.digestBytes)} of digests in ${report.rounds} round(s)`
    : `read ${formatBytes(report.bytesReadToCompare)} to compare`;
  const checked = report.check ? "; BLAKE3 check passed" : "";
  return `${moved}; ${compared}${checked} (${(report.ms / 1000).toFixed(1)} s)`;
}

async function watch(
  from: SyncSide,
  to: SyncSide,
  options: SyncCommandOptions,
  output: Output,
  signal: AbortSignal,
): Promise<void> {
  const intervalMs = options.watch!;
  output.start(
    { direction: "push", from: from.name, to: to.name, size: from.backend.size, watchMs: intervalMs },
    `replicating ${from.name} → ${to.name} every ${intervalMs} ms (changes found by digests) until SIGINT`,
  );
  // The last round runs after the signal: its digests must not be aborted by it.
  await replicate(from, to, digestChanges(from, options.chunkSize), {
    intervalMs,
    signal,
    chunkSize: options.chunkSize,
    concurrency: options.concurrency,
    onSynced: (report) => {
      output.event("progress", { label: "synced", ...report });
      output.say(summary(report));
    },
    onRound: (round) => {
      output.event("progress", { label: "round", ...round });
      if (round.chunks > 0 || round.final)
        output.say(
          `round ${round.round}: pushed ${round.chunks} changed chunk(s), ${formatBytes(round.bytes)}`,
        );
    },
  });
}
