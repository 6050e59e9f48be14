import { Command, CommanderError } from "commander";
import { ExitStatus } from "./exit-status.js";
import { Output } from "./output.js";

const outputs = new WeakMap<Command, Output>();

export interface ProgramInfo {
  name: string;
  description: string;
  /** Reported by `--version` (see `packageVersion`). */
  version: string;
}

/**
 * A commander program with what every r3map binary has: `-V, --version`,
 * `--debug` (stack traces with errors), errors left to `runCli` to print in
 * one line. Add subcommands to it, then call `runCli`.
 */
export function createProgram(info: ProgramInfo): Command {
  return new Command(info.name)
    .description(info.description)
    .version(`${info.name} ${info.version}`, "-V, --version", "print the version and exit")
    .option("--debug", "print stack traces with errors")
    .exitOverride()
    .configureOutput({ outputError: () => {} });
}

/** Commander's own error printing and exits off, for this command and those added with `addCommand`. */
function quiet(command: Command): void {
  command.exitOverride().configureOutput({ outputError: () => {} });
  for (const sub of command.commands) quiet(sub);
}

/**
 * The Output of the command being run (its `--json` decides NDJSON events).
 * Call it in an action with the command commander passes last.
 */
export function outputFor(command: Command): Output {
  const output = outputs.get(command);
  if (!output) throw new Error(`no Output for "${command.name()}": run the program with runCli`);
  return output;
}

/** A subcommand's name under the program: `mount`, or `migrate seed` for a nested one. */
function commandPath(command: Command): string {
  const names: string[] = [];
  for (let at: Command | null = command; at?.parent; at = at.parent) names.unshift(at.name());
  return names.join(" ") || command.name();
}

/**
 * Parses the command line and runs the action. Any error — a bad option, a
 * failed action, an uncaught one later — is printed as one line (stack traces
 * only with --debug) and ends the process with the status of the documented
 * table (`ExitStatus`). Once the command line has parsed, `--json` also gets
 * an `error` and a `done` event.
 */
export async function runCli(program: Command, argv: readonly string[] = process.argv): Promise<void> {
  const debug = argv.includes("--debug");
  // A command line that does not parse writes no events: its one line on stderr and status 2 say it all.
  let output = new Output({ program: program.name(), debug });
  quiet(program);
  program.hook("preAction", (_root, command) => {
    output = new Output({
      program: program.name(),
      command: commandPath(command),
      json: command.opts().json === true,
      debug,
    });
    outputs.set(command, output);
  });
  const fail = (error: unknown) => output.finish(output.error(error));
  process.on("uncaughtException", fail);
  process.on("unhandledRejection", fail);
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError && error.exitCode === 0) return; // --help, --version
    // No subcommand: commander has printed the help.
    if (error instanceof CommanderError && error.code === "commander.help") output.finish(ExitStatus.USAGE);
    fail(error);
  }
}
