/**
 * SIGINT/SIGTERM: the first closes gracefully (push to tape, detach the
 * device) and exits; a second exits at once — unpushed changes then stay in
 * the cache and its state file, and the next start pushes them.
 */
export function closeOnSignals(close: () => Promise<void>, say: (text: string) => void): void {
  let closing = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (closing) {
      say(
        `${signal} again: exiting at once (what was not pushed stays in the cache; the next start pushes it)`,
      );
      process.exit(1);
    }
    closing = true;
    say(`${signal}: pushing to the tape and closing (a second signal exits at once)`);
    close().then(
      () => process.exit(0),
      (error: unknown) => {
        say(`close failed: ${error instanceof Error ? error.message : String(error)}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}
