import {
  type Address,
  addExamples,
  addressOption,
  closeOnSignals,
  countOption,
  durationOption,
  type Output,
  outputFor,
  readTokens,
} from "@r3map/cli-kit";
import { formatBytes, type Progress, R3mapError } from "@r3map/core";
import { Leecher, type Seeder } from "@r3map/migration";
import { type Frontend, MountCore } from "@r3map/mount";
import { type Command, Option } from "commander";
import { type FinalizeCause, finalizeTrigger } from "../migration/finalize-trigger.js";
import {
  closeSeeding,
  planSeeding,
  type SeedPlan,
  type ServingOptions,
  seedingFields,
  seedingLine,
  startSeeding,
} from "../migration/seeding.js";
import {
  chunkSizeOption,
  jsonOption,
  mountPointOption,
  schemeOption,
  schemePackages,
  tokenFileOption,
  tokenOption,
} from "../options.js";
import { warnIfTokenVisible, withoutToken, withToken } from "../remote-uri.js";

export interface SeedCommandOptions extends ServingOptions {
  as: Frontend;
  listen: Address;
  chunkSize: number;
  mountPoint?: string;
  token: string[];
  tokenFile: string[];
  scheme: string[];
  json?: boolean;
}

export interface LeechCommandOptions extends ServingOptions {
  as: Frontend;
  mountPoint?: string;
  local?: string;
  pullWorkers: number;
  data?: string;
  thenSeed?: Address;
  tokenFile: string[];
  json?: boolean;
}

export function migrateCommand(program: Command): void {
  const migrate = program
    .command("migrate")
    .summary("live-migrate a resource between hosts: seed it here, or leech it from a seeder")
    .description(
      "Live migration, two-phase: the seeder serves a resource its application keeps using; the leecher mounts it at once, locked, and pulls every chunk while the seeder's writes are tracked (pre-copy). Finalizing (ENTER or SIGUSR1 on the leecher) suspends the seeder's application for a last round, fetches what it changed first and unlocks the leecher's mount (the downtime ends); the rest arrives on demand and in the background (post-copy). Once every chunk is here the leecher owns the resource and may seed it on (--then-seed: chains A → B → C). Control over Connect/gRPC (wire-compatible with the original r3map's Seeder service), data over NBD.",
    );
  seedCommand(migrate);
  leechCommand(migrate);
  migrate.addHelpText(
    "after",
    "\n--as slice is refused: a slice is memory inside the process that mounts it, which no other process can use. Migrate memory as a file (--as file, and mmap it), or a slice inside your own program with @r3map/migration.",
  );
  addExamples(migrate, [
    { what: "Show the options and examples of seeding", line: "r3map migrate seed --help" },
    { what: "Show the options and examples of leeching", line: "r3map migrate leech --help" },
  ]);
}

/** The options both sides serve with (the seeder, and a leecher that seeds on). */
function addServingOptions(command: Command, forThenSeed: boolean): Command {
  const when = forThenSeed ? "with --then-seed: " : "";
  return command
    .addOption(
      countOption(
        "--data-port <port>",
        `${when}the NBD data plane's port, on the listen host (0: a free one; leechers learn it from Track)`,
        { max: 65535 },
        "0",
      ),
    )
    .option(
      "--no-data-plane",
      `${when}no NBD data plane: leechers read over Connect (slower, but the token is checked there)`,
    )
    .option("--tls-cert <file>", `${when}the server's certificate (PEM): both planes require TLS`)
    .option("--tls-key <file>", `${when}the server's private key (PEM)`)
    .option(
      "--tls-ca <file>",
      `${when}CA (PEM) that must have signed every leecher's certificate (mutual TLS, both planes)`,
    )
    .option(
      "--before-sync <command>",
      `${when}shell command run at the last round, before the dirty chunks are taken: suspend the application, unmount its file system (R3MAP_PATH, R3MAP_SIZE are set)`,
    )
    .option(
      "--after-resume <command>",
      `${when}shell command run when a leecher went away after the last round and the application may write again`,
    )
    .option("--insecure", `${when}allow listening beyond this machine without authentication of both planes`);
}

function seedCommand(migrate: Command): void {
  const command = migrate
    .command("seed")
    .summary("mount a resource here and serve it to a leecher until it has migrated away")
    .description(
      "Mount a resource (file:///disk.img, memory:?size=…, nbd://…, any backend URI) as a file (FUSE) or a block device (--as path) for its application — another process — and serve it to a leecher: reads of its current content, every write tracked from the leecher's Track on. At the last round --before-sync runs (suspend the application), the mount is flushed, the changed chunks are handed over, and writes are refused. When the leecher has every chunk the mount closes and the command exits 0. A leecher that goes away changes nothing (the application goes on; --after-resume runs after a last round). The first SIGINT/SIGTERM closes (after waiting for a leecher past its last round); a second exits at once.",
    )
    .argument("<resource>", "the resource, as a backend URI")
    .addOption(frontendOption("what the application uses"))
    .addOption(
      addressOption(
        "--listen <address>",
        "Connect/gRPC control plane: host:port, :port (127.0.0.1) or port; 0 picks a free one",
        { path: false },
        "127.0.0.1:1337",
      ),
    )
    .addOption(chunkSizeOption())
    .addOption(mountPointOption())
    .addOption(tokenFileOption())
    .addOption(tokenOption())
    .addOption(recoveryOption());
  addServingOptions(command, false)
    .addOption(jsonOption())
    .addOption(schemeOption())
    .action((resource: string, options: SeedCommandOptions, self: Command) =>
      seed(resource, options, outputFor(self)),
    );
  addExamples(command, [
    {
      what: "Seed a 64 MiB disk image as a file on 127.0.0.1:1337; the leecher's token comes from the environment",
      line: "R3MAP_TOKEN=change-me r3map migrate seed 'file:///tmp/disk.img?size=64MiB&create=1' --listen 127.0.0.1:1337",
    },
    {
      what: "Seed it as a block device whose ext4 is unmounted at the last round, data plane on port 10810",
      line: "r3map migrate seed 'file:///tmp/disk.img?size=64MiB&create=1' --as path --listen 127.0.0.1:1337 --data-port 10810 --before-sync 'umount /mnt/data || true'",
    },
    {
      what: "Follow a seeder's phases as NDJSON events",
      line: "r3map migrate seed 'memory:?size=64MiB' --listen 127.0.0.1:1337 --json",
    },
  ]);
}

function leechCommand(migrate: Command): void {
  const command = migrate
    .command("leech")
    .summary("take a resource over from a seeder: pre-copy, finalize (ENTER/SIGUSR1), post-copy")
    .description(
      "Mount the seeder's resource here at once — locked: reads wait, nothing fails — and pull every chunk while the seeder's application keeps running (pre-copy). ENTER (on a terminal) or SIGUSR1 finalizes: the seeder's last round, then the chunks it changed are fetched first and the mount unlocks (the downtime is printed); the rest arrives on demand and in the background (post-copy). Once every chunk is here the seeder lets go: the mount stays until SIGINT/SIGTERM, or with --then-seed it is seeded on (chains). A first signal before finalizing closes and leaves the seeder as it was; during post-copy it waits for the rest first (the resource is whole nowhere else). A second signal exits at once.",
    )
    .argument("<seeder>", "the seeder's URI: r3map+h2c://host:port or r3map+https://host:port?ca=…")
    .addOption(frontendOption("what the resource becomes here"))
    .addOption(mountPointOption())
    .option(
      "--local <uri>",
      "where the pulled chunks are kept, as a backend URI (default: memory of the resource's size)",
    )
    .addOption(countOption("--pull-workers <n>", "chunks pulled at once (at least 1)", { min: 1 }, "32"))
    .option(
      "--data <uri>",
      "the seeder's data plane as reachable from here (nbd://host:port/seed), when its own address is not (a proxy, NAT)",
    )
    .addOption(
      addressOption(
        "--then-seed <address>",
        "once every chunk is here, seed the resource on at host:port (a chain A → B → C)",
        { path: false },
      ),
    )
    .addOption(recoveryOption())
    .addOption(tokenFileOption());
  addServingOptions(command, true)
    .addOption(jsonOption())
    .action((seeder: string, options: LeechCommandOptions, self: Command) =>
      leech(seeder, options, outputFor(self)),
    );
  addExamples(command, [
    {
      what: "Leech from a seeder as a file; press ENTER (or kill -USR1 the process) to finalize",
      line: "R3MAP_TOKEN=change-me r3map migrate leech r3map+h2c://127.0.0.1:1337 --as file",
    },
    {
      what: "Leech as a block device with NDJSON events on stdout; after SIGUSR1 and post-copy, seed it on at 127.0.0.1:1338",
      line: "R3MAP_TOKEN=change-me r3map migrate leech r3map+h2c://127.0.0.1:1337 --as path --then-seed 127.0.0.1:1338 --json",
    },
  ]);
}

/** `--recovery`: how long both sides wait for each other after a dropped connection past the last round. */
function recoveryOption(): Option {
  return durationOption(
    "--recovery <duration>",
    "after the last round, how long a dropped connection is waited for (5s, 1m; a bare number is ms): a leecher's reads of chunks not yet here wait, then fail with EIO; a seeder keeps the migration, then lets its application write again",
    { minMs: 1 },
    "60s",
  );
}

/** `--as`: slice is a choice so that refusing it can say why (see `refuseSlice`). */
function frontendOption(what: string): Option {
  return new Option("--as <frontend>", `${what}: a file or a block device (path)`)
    .choices(["file", "path", "slice"])
    .default("file");
}

function refuseSlice(as: Frontend): void {
  if (as !== "slice") return;
  throw new R3mapError(
    "ERR_INVALID_ARGUMENT",
    "--as slice: a slice is memory inside the process that mounts it, and no other process can use it, so the command line cannot migrate one; use --as file (and mmap the file) or --as path, or migrate a slice inside your own program with @r3map/migration",
  );
}

/** Seeds a resource until a leecher has taken it over, then closes and exits 0. */
export async function seed(resource: string, options: SeedCommandOptions, output: Output): Promise<void> {
  refuseSlice(options.as);
  warnIfTokenVisible(options.token, output);
  const tokens = readTokens({ tokens: options.token, tokenFiles: options.tokenFile });
  const plan = planSeeding(options.listen, options, tokens);
  const core = await MountCore.open(
    options.as,
    { remote: resource, schemes: schemePackages(options.scheme), chunkSize: options.chunkSize },
    options.mountPoint ? { mountPoint: options.mountPoint } : {},
  );
  let seeder: Seeder;
  try {
    seeder = await startSeeding(core, plan, output);
  } catch (error) {
    await core.close().catch(() => {});
    throw error;
  }
  // Before announcing: a signal sent as soon as the announcement is read must close gracefully.
  closeOnSignals(async () => {
    await closeSeeding(seeder, core, output);
    output.done({ migrated: seeder.phase === "migrated" }, "closed");
  }, output);
  output.start(
    { resource: withoutToken(resource), as: options.as, ...seedingFields(seeder, core) },
    seedingLine(seeder, core, options.as),
  );
  await seeder.migrated;
  await closeSeeding(seeder, core, output);
  output.done({ migrated: true }, "the resource has migrated away: closed");
  output.finish(0);
}

/**
 * Leeches a resource: pre-copy until ENTER or SIGUSR1, then finalize,
 * post-copy, release — and keeps it mounted, or seeds it on.
 */
export async function leech(uri: string, options: LeechCommandOptions, output: Output): Promise<void> {
  refuseSlice(options.as);
  const tokens = readTokens({ tokenFiles: options.tokenFile });
  // Checked before anything opens: a refused --then-seed must not cost a migration.
  const plan = options.thenSeed ? planSeeding(options.thenSeed, options, tokens) : undefined;
  const leecher = await Leecher.open(withToken(uri, tokens), {
    as: options.as,
    pullWorkers: options.pullWorkers,
    recoveryMs: options.recovery,
    ...(options.local ? { local: options.local } : {}),
    ...(options.data ? { data: options.data } : {}),
    ...(options.mountPoint ? { device: { mountPoint: options.mountPoint } } : {}),
  });
  const migration = new LeechRun(leecher, output);
  closeOnSignals(async () => {
    await migration.shutdown();
    output.done({ path: leecher.path }, `closed: ${leecher.path} unmounted`);
  }, output);
  try {
    await migration.run(uri, options, plan);
  } catch (error) {
    await migration.shutdown().catch(() => {});
    throw error;
  }
}

/** One leech from the command line: its events, its finalize trigger and how it closes in each phase. */
class LeechRun {
  readonly #leecher: Leecher;
  readonly #output: Output;
  readonly #chunkSize: number;
  #finalizing: Promise<unknown> | undefined;
  #seeder: Seeder | undefined;
  #disposeTrigger: () => void = () => {};

  constructor(leecher: Leecher, output: Output) {
    this.#leecher = leecher;
    this.#output = output;
    this.#chunkSize = leecher.core.engine.chunkSize;
  }

  async run(uri: string, options: LeechCommandOptions, plan: SeedPlan | undefined): Promise<void> {
    const leecher = this.#leecher;
    const output = this.#output;
    const trigger = finalizeTrigger((cause) =>
      output.say(`${cause} again: already finalizing (SIGINT/SIGTERM closes)`),
    );
    this.#disposeTrigger = trigger.dispose;
    output.start(
      {
        seeder: withoutToken(uri),
        path: leecher.path,
        size: leecher.size,
        as: options.as,
        chunkSize: this.#chunkSize,
        pid: process.pid,
      },
      `leeching ${withoutToken(uri)} as ${options.as}: ${leecher.path} (${formatBytes(leecher.size)}), locked until finalized; ${process.stdin.isTTY ? "press ENTER or " : ""}send SIGUSR1 (kill -USR1 ${process.pid}) to finalize`,
    );
    output.event("phase", { phase: "pre-copy" });
    leecher.on("phase", (phase) => {
      if (phase !== "closed") output.event("phase", { phase });
    });
    leecher.on("progress", (progress) => this.#report(progress));
    const current = leecher.progress();
    if (current) this.#report(current);
    // A failure in pre-copy (the seeder or the network gone) ends the migration: the seeder goes on as it was.
    const failed = new Promise<never>((_, reject) =>
      leecher.on("error", (error) => {
        if (leecher.phase === "pre-copy" && !this.#finalizing) reject(error);
        else output.warning(error instanceof Error ? error.message : String(error));
      }),
    );
    failed.catch(() => {});
    const cause = await Promise.race([trigger.fired, failed]);
    this.#disposeTrigger();
    await this.#finalize(cause);
    await leecher.release();
    if (plan) {
      this.#seeder = await startSeeding(leecher.core, plan, output);
      output.event("phase", { phase: "seeding", ...seedingFields(this.#seeder, leecher.core) });
      output.say(seedingLine(this.#seeder, leecher.core, options.as));
      await this.#seeder.migrated;
      await closeSeeding(this.#seeder, leecher.core, output);
      output.done({ migrated: true }, "the resource has migrated on: closed");
      output.finish(0);
    }
    output.say(
      `released: every chunk is here and the seeder let go; ${leecher.path} is this host's until SIGINT/SIGTERM`,
    );
  }

  async #finalize(cause: FinalizeCause): Promise<void> {
    const output = this.#output;
    output.say(`finalizing (${cause}): the seeder's application stops for its last round`);
    const finalizing = this.#leecher.finalize();
    this.#finalizing = finalizing;
    const { dirty, downtimeMs, lastRoundMs } = await finalizing;
    const dirtyBytes = Math.min(this.#leecher.size, dirty.length * this.#chunkSize);
    output.event("downtime", {
      downtimeMs: Math.round(downtimeMs * 1000) / 1000,
      lastRoundMs: Math.round(lastRoundMs * 1000) / 1000,
      dirtyChunks: dirty.length,
      dirtyBytes,
    });
    output.say(
      `unlocked after ${downtimeMs.toFixed(1)} ms of downtime: the application may resume on ${this.#leecher.path}; ${dirty.length} chunk(s) (${formatBytes(dirtyBytes)}) changed during pre-copy are fetched first`,
    );
    const progress = this.#leecher.progress();
    if (progress) this.#report(progress);
  }

  #precopyComplete = false;

  #report(progress: Progress): void {
    const leecher = this.#leecher;
    if (leecher.phase !== "pre-copy" && leecher.phase !== "post-copy") return;
    const size = leecher.size;
    const done = Math.min(size, progress.chunksLocal * this.#chunkSize);
    this.#output.progress({
      label: leecher.phase,
      done,
      total: size,
      fields: {
        phase: leecher.phase,
        chunksLocal: progress.chunksLocal,
        chunksTotal: progress.chunksTotal,
        bytesPulled: progress.bytesPulled,
      },
    });
    if (leecher.phase === "pre-copy" && done === size && !this.#precopyComplete && !this.#finalizing) {
      this.#precopyComplete = true;
      this.#output.say(
        "pre-copy complete: every chunk is here; the seeder's writes since are fetched again after finalizing",
      );
    }
  }

  /**
   * Closes gracefully, by phase: before the last round the seeder just goes
   * on; after it, the rest is pulled first (or, seeding on, a leecher past its
   * last round is waited for); then the mount closes.
   */
  async shutdown(): Promise<void> {
    this.#disposeTrigger();
    const leecher = this.#leecher;
    if (this.#seeder) {
      await closeSeeding(this.#seeder, leecher.core, this.#output);
      return;
    }
    // A last round under way decides which of the two it is.
    await this.#finalizing?.catch(() => {});
    if (leecher.phase === "post-copy") {
      this.#output.say("post-copy: pulling the rest before closing (the resource is whole nowhere else)");
      await leecher.release();
    }
    await leecher.close();
  }
}
