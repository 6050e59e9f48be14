import type { Command } from "commander";

/** One example of a command line, with a sentence saying what it does. */
export interface Example {
  /** What the example does, e.g. "Serve 1 GiB of memory over NBD on 127.0.0.1:10809". */
  what: string;
  /** The command line, exactly as a user types it in a POSIX shell. */
  line: string;
}

/**
 * Ends `command`'s --help with its examples, each as `$ line` under its
 * sentence, so they can be copied — and extracted by a test that runs them.
 */
export function addExamples(command: Command, examples: readonly Example[]): Command {
  const text = examples.map((example) => `  ${example.what}:\n    $ ${example.line}`).join("\n");
  return command.addHelpText("after", `\nExamples:\n${text}\n`);
}
