/**
 * SIGINT/SIGTERM: the first closes gracefully (final push, unmount) and exits;
 * a second exits at once, as users of long-running mounts expect.
 */
export function closeOnSignals(close: () => Promise<void>, say: (text: string) => void): void {
  let closing = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (closing) {
      say(`${signal} again: forcefully exiting`);
      process.exit(1);
    }
    closing = true;
    say(`${signal}: closing (a second signal exits at once)`);
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
