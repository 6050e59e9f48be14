import * as readline from "node:readline";

/** What finalizes a leech: a person pressing ENTER, or a script sending SIGUSR1. */
export type FinalizeCause = "ENTER" | "SIGUSR1";

export interface FinalizeTrigger {
  /** Resolves at the first ENTER (on a terminal) or SIGUSR1. */
  readonly fired: Promise<FinalizeCause>;
  /** Stops reading the terminal (SIGUSR1 stays handled, and ignored, for the life of the process). */
  dispose(): void;
}

/**
 * Waits for the user to finalize a migration, as the original's example
 * does: ENTER when stdin is a terminal, SIGUSR1 always (`kill -USR1 PID`).
 * SIGUSR1 keeps a handler after it fired: without one, Node would open its
 * inspector on the next SIGUSR1.
 */
export function finalizeTrigger(onRepeat: (cause: FinalizeCause) => void): FinalizeTrigger {
  let fire: (cause: FinalizeCause) => void = () => {};
  let fired = false;
  const promise = new Promise<FinalizeCause>((resolve) => {
    fire = (cause) => {
      if (fired) return onRepeat(cause);
      fired = true;
      resolve(cause);
    };
  });
  process.on("SIGUSR1", () => fire("SIGUSR1"));
  const terminal = process.stdin.isTTY ? readline.createInterface({ input: process.stdin }) : undefined;
  terminal?.on("line", () => fire("ENTER"));
  return {
    fired: promise,
    dispose: () => {
      terminal?.close();
      if (terminal) process.stdin.pause();
    },
  };
}
