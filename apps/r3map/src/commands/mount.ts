import {
  addExamples,
  closeOnSignals,
  durationOption,
  ExitStatus,
  type Output,
  outputFor,
  readTokens,
} from "@r3map/cli-kit";
import { formatBytes, type Progress } from "@r3map/core";
import {
  type CloseRetryStatus,
  clearStaleMounts,
  type Mount,
  type MountDescription,
  mountFile,
  mountPath,
} from "@r3map/mount";
import { type Command, Option } from "commander";
import {
  chunkSizeOption,
  jsonOption,
  mountPointOption,
  pullWorkersOption,
  schemeOption,
  schemePackages,
  timeoutOption,
  tokenFileOption,
} from "../options.js";
import { defaultRecoveryFile } from "../recovery-file.js";
import { withToken } from "../remote-uri.js";

export interface MountCommandOptions {
  as: "file" | "path";
  managed?: boolean;
  local?: string;
  chunkSize: number;
  pullWorkers: number;
  /** Milliseconds; 0: only on sync and close. */
  pushInterval: number;
  /** Milliseconds. */
  timeout: number;
  recoveryFile?: string;
  mountPoint?: string;
  tokenFile: string[];
  scheme: string[];
  json?: boolean;
}

export function mountCommand(program: Command): void {
  const command = program
    .command("mount")
    .summary("mount a remote as a file or a block device until SIGINT/SIGTERM")
    .description(
      "Mount a remote (nbd://…, r3map+h2c://…, redis://…) as a file (FUSE) or a block device (a loop device over it) until SIGINT/SIGTERM. Direct mounts send every read and write to the remote; managed ones (--managed) keep a local cache, pull the rest in the background and push writes back. The first signal unmounts and pushes; while the remote cannot take the writes, they are saved to a recovery file and the push is retried, saying what is still unpushed, until it succeeds (the file is then removed). A second signal stops retrying and exits with status 8, the file kept for `r3map recover`; a third exits at once. A killed mount is cleaned up by a guardian process; mounts left by dead r3map processes are cleared at start.",
    )
    .argument("<remote>", "remote backend URI")
    .addOption(
      new Option("--as <frontend>", "mount it as a file or a block device (path)")
        .choices(["file", "path"])
        .default("file"),
    )
    .option("--managed", "keep a local cache, pull in the background, push writes back")
    .option(
      "--local <uri>",
      "managed: the local cache as a backend URI (default: memory of the remote's size)",
    )
    .addOption(chunkSizeOption())
    .addOption(pullWorkersOption())
    .addOption(
      durationOption(
        "--push-interval <duration>",
        "managed: time between background pushes (500ms, 5s, 1m; a bare number is ms); 0 pushes only on sync and close",
        { zero: "only on sync and close" },
        "5s",
      ),
    )
    .addOption(
      timeoutOption("a read of a chunk not yet local, a fsync or one push attempt at close (then EIO)"),
    )
    .option(
      "--recovery-file <file>",
      "managed: where writes the remote cannot take at close are saved (default: $XDG_STATE_HOME/r3map/recovery/<time>-<pid>.r3rec)",
    )
    .addOption(mountPointOption())
    .addOption(tokenFileOption())
    .addOption(jsonOption())
    .addOption(schemeOption())
    .action((remote: string, options: MountCommandOptions, self: Command) =>
      mount(remote, options, outputFor(self)),
    );
  addExamples(command, [
    {
      what: "Mount an NBD export as a file; every read and write goes to the remote",
      line: "r3map mount nbd://127.0.0.1:10809/default",
    },
    {
      what: "Mount it managed as a block device: 8 workers pull it, writes are pushed every 5 s",
      line: "r3map mount nbd://127.0.0.1:10809/default --as path --managed --pull-workers 8 --push-interval 5s",
    },
    {
      what: "Follow a managed mount as NDJSON events on stdout",
      line: "r3map mount nbd://127.0.0.1:10809/default --managed --json",
    },
    {
      what: "Mount a Connect remote, its token from the environment, in 4 MiB chunks",
      line: "R3MAP_TOKEN=change-me r3map mount r3map+h2c://127.0.0.1:1337 --managed --chunk-size 4MiB",
    },
  ]);
}

/** Mounts a remote as a file or a block device until a signal arrives, then closes (final push). */
export async function mount(remote: string, options: MountCommandOptions, output: Output): Promise<void> {
  const description: MountDescription = {
    remote: withToken(remote, readTokens({ tokenFiles: options.tokenFile })),
    schemes: schemePackages(options.scheme),
    chunkSize: options.chunkSize,
    ...(options.managed
      ? {
          managed: {
            ...(options.local ? { local: options.local } : {}),
            pull: options.pullWorkers > 0 ? { workers: options.pullWorkers } : false,
            push: { intervalMs: options.pushInterval > 0 ? options.pushInterval : null },
          },
        }
      : {}),
  };
  const deviceOptions = options.mountPoint ? { mountPoint: options.mountPoint } : {};
  for (const stale of await clearStaleMounts()) {
    output.warning(`cleared a stale mount at ${stale.mountPoint}, left by process ${stale.owner}`, {
      mountPoint: stale.mountPoint,
      owner: stale.owner,
      loopDevices: stale.loopDevices,
    });
  }
  const mounted =
    options.as === "path"
      ? await mountPath({ ...description, timeoutMs: options.timeout }, deviceOptions)
      : await mountFile({ ...description, timeoutMs: options.timeout }, deviceOptions);
  const mode = options.managed ? "managed" : "direct";
  let last: Progress | undefined;
  const closing = new CloseWithRetries(
    mounted,
    output,
    options.managed === true,
    options.recoveryFile ?? defaultRecoveryFile(),
  );
  // Before announcing the mount: a signal sent as soon as the announcement is read must close it gracefully.
  closeOnSignals(
    () =>
      // The fields are read once closed: the last progress report counts the final push.
      closing.run(() => ({
        path: mounted.path,
        ...(last ? { bytesPulled: last.bytesPulled, bytesPushed: last.bytesPushed } : {}),
      })),
    output,
    {
      second: {
        means: "stops retrying the push and keeps the recovery file",
        run: (signal) => closing.stopRetrying(signal),
      },
    },
  );
  const chunks = Math.ceil(mounted.size / options.chunkSize);
  if (options.managed && options.pullWorkers > chunks) {
    output.warning(
      `--pull-workers ${options.pullWorkers} is more than the ${chunks} chunks; ${chunks} pull at once`,
    );
  }
  output.start(
    { remote, path: mounted.path, size: mounted.size, as: options.as, mode, chunkSize: options.chunkSize },
    `${remote} mounted ${mode} as ${options.as}: ${mounted.path} (${formatBytes(mounted.size)})`,
  );
  let pushedSaid = 0;
  const report = (progress: Progress) => {
    last = progress;
    const local = Math.min(mounted.size, progress.chunksLocal * options.chunkSize);
    output.progress({ label: "local", done: local, total: mounted.size, fields: { ...progress } });
    if (progress.bytesPushed > pushedSaid) {
      pushedSaid = progress.bytesPushed;
      output.say(
        `pushed ${formatBytes(progress.bytesPushed)} so far, ${progress.dirtyChunks} chunk(s) dirty`,
      );
    }
  };
  mounted.on("progress", report);
  // Reports made while the mount was opening had no listener yet (a fast pull may be over): start from now.
  const current = await mounted.progress();
  if (current && !last) report(current);
  mounted.on("error", (error) =>
    output.warning(`background: ${error instanceof Error ? error.message : String(error)}`, {
      code: (error as { code?: unknown }).code,
    }),
  );
}

/**
 * The close of a mount at a signal: retries the push while the remote is
 * away, saying what is still unpushed, until it succeeds or `stopRetrying`
 * (a second signal); then says exactly what became of the writes and ends
 * the process with the matching status.
 */
class CloseWithRetries {
  readonly #stop = new AbortController();

  constructor(
    readonly mount: Mount,
    readonly output: Output,
    readonly managed: boolean,
    readonly recoveryFile: string,
  ) {}

  async run(fieldsOnceClosed: () => Record<string, unknown>): Promise<void> {
    const result = await this.mount.close({
      retryUntil: this.#stop.signal,
      recoveryFile: this.recoveryFile,
      onRetry: (status) => this.#retrying(status),
    });
    const fields = fieldsOnceClosed();
    if (result.pushed) {
      this.output.done(
        { ...fields, pushed: true },
        `closed: ${this.mount.path} unmounted${this.managed ? ", every write pushed" : ""}`,
      );
      return;
    }
    const status = ExitStatus.SAVED_FOR_RECOVERY;
    this.output.done(
      {
        ...fields,
        pushed: false,
        recoveryFile: result.recoveryFile,
        unpushedChunks: result.chunks,
        unpushedBytes: result.bytes,
        exitStatus: status,
      },
      `closed: ${this.mount.path} unmounted; ${result.chunks} chunk(s) (${formatBytes(result.bytes)}) the remote did not take are saved in ${result.recoveryFile}: push them with \`r3map recover ${result.recoveryFile}\``,
    );
    this.output.finish(status);
  }

  stopRetrying(signal: NodeJS.Signals): void {
    this.output.say(`${signal} again: no more retries; the unpushed writes stay in the recovery file`);
    this.#stop.abort();
  }

  #retrying(status: CloseRetryStatus): void {
    const saved = status.recoveryFile ? `saved in ${status.recoveryFile} meanwhile` : "not saved anywhere";
    this.output.warning(
      `the remote did not take ${status.unpushedChunks} chunk(s) (${formatBytes(status.unpushedBytes)}), ${saved}: ${status.reason}; attempt ${status.attempt + 1} in ${(status.nextDelayMs / 1000).toFixed(1)} s (a second signal stops retrying)`,
      {
        unpushedChunks: status.unpushedChunks,
        unpushedBytes: status.unpushedBytes,
        attempt: status.attempt,
        nextDelayMs: status.nextDelayMs,
        ...(status.recoveryFile ? { recoveryFile: status.recoveryFile } : {}),
      },
    );
  }
}
