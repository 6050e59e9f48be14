/**
 * Waiting in tests without fixed sleeps: poll a condition until it holds or a
 * deadline passes (`waitFor`), retry an operation until it succeeds or a
 * deadline passes (`retryUntil`), or let every microtask queued so far run
 * (`nextTurn`, `settlesThisTurn`). A deadline only bounds a failure: a passing
 * test never waits for it, so a slow machine makes it slower, never red.
 */

export interface WaitOptions {
  /** Give up after this many milliseconds (default 10 s). */
  timeoutMs?: number;
  /** Pause between attempts in milliseconds (default 5). */
  intervalMs?: number;
  /** What is awaited, for the error at the deadline ("the chunk to be pulled"). */
  message?: string;
}

type Truthy<T> = Exclude<T, false | 0 | "" | null | undefined>;

function optionsOf(options: WaitOptions | string): WaitOptions {
  return typeof options === "string" ? { message: options } : options;
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Polls `condition` until it returns a truthy value, and returns that value.
 * Throws at the deadline with `message`; an error thrown by `condition` ends
 * the wait at once (a server that exited need not be waited for).
 *
 * ```ts
 * await waitFor(() => pipeline.presence.has(5), "chunk 5 to be pulled");
 * ```
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  options: WaitOptions | string = {},
): Promise<Truthy<T>> {
  const { timeoutMs = 10_000, intervalMs = 5, message = "a condition" } = optionsOf(options);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value as Truthy<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${message}`);
    await pause(intervalMs);
  }
}

export interface RetryOptions extends WaitOptions {
  /** Which errors are worth another attempt (default: all); others are thrown at once. */
  retryIf?: (error: unknown) => boolean;
}

/**
 * Runs `operation` until it resolves, and returns its result: a remote that
 * is coming back takes a moment. At the deadline the last error is thrown.
 */
export async function retryUntil<T>(operation: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const { timeoutMs = 10_000, intervalMs = 100, retryIf = () => true } = options;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await operation();
    } catch (error) {
      if (!retryIf(error) || Date.now() > deadline) throw error;
      await pause(intervalMs);
    }
  }
}

/**
 * Resolves on the event loop's next turn: by then every microtask queued
 * before — and every one those queue — has run. Not a sleep: a chain of
 * promises that needs no I/O and no timer is guaranteed to have finished.
 */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Whether `promise` settles before the event loop's next turn. Proves that
 * something waits: a call that does not wait for what it should (a lock, a
 * fetch in flight) finishes within the turn when its path needs no I/O, so
 * `false` here is a deterministic observation, not a timing guess.
 */
export async function settlesThisTurn(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  const mark = () => {
    settled = true;
  };
  promise.then(mark, mark);
  await nextTurn();
  return settled;
}
