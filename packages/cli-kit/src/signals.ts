import { constants } from "node:os";
import type { Output } from "./output.js";

export interface SignalHandlingOptions {
  /** Signals handled (default SIGINT and SIGTERM). */
  signals?: NodeJS.Signals[];
  /**
   * Runs at the second signal, just before the process exits: the last chance
   * to save what the graceful close would have saved (synchronously).
   */
  onForced?: () => void;
}

export interface CloseControl {
  /** Starts the graceful close as the first signal would, saying `reason` (e.g. "the parent exited"). */
  close(reason: string): void;
  /** Removes the signal handlers. */
  dispose(): void;
}

/**
 * The first SIGINT/SIGTERM closes gracefully — `close()`, then exit 0, or the
 * error's exit status if it fails; a second exits at once with 128 + the
 * signal's number, as users of long-running mounts and servers expect.
 * Install it before announcing the work, so a signal sent as soon as the
 * announcement is read is handled.
 */
export function closeOnSignals(
  close: () => Promise<void>,
  output: Output,
  options: SignalHandlingOptions = {},
): CloseControl {
  const signals = options.signals ?? ["SIGINT", "SIGTERM"];
  let closing = false;
  const begin = (reason: string) => {
    if (closing) return;
    closing = true;
    output.say(`${reason}: closing (a second signal exits at once)`);
    close().then(
      () => output.finish(0),
      (error: unknown) => output.finish(output.error(error, "close failed")),
    );
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (!closing) return begin(signal);
    output.say(`${signal} again: exiting at once`);
    options.onForced?.();
    output.finish(128 + (constants.signals[signal] ?? 0));
  };
  for (const signal of signals) process.on(signal, onSignal);
  return {
    close: begin,
    dispose: () => {
      for (const signal of signals) process.off(signal, onSignal);
    },
  };
}

/** The parent at start-up: one that exits before `watchParent` is called still counts. */
const startingParent = process.ppid;

/**
 * Calls `onGone` once when the process that started this one exits (its
 * parent changes: Node has no PR_SET_PDEATHSIG), checking every `intervalMs`.
 * The check does not keep the process alive.
 */
export function watchParent(onGone: () => void, intervalMs = 500): () => void {
  const parent = startingParent;
  if (process.ppid !== parent) {
    const soon = setImmediate(onGone);
    return () => clearImmediate(soon);
  }
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onGone();
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
