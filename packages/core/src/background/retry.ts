import { delay } from "../util/abort.js";

export interface RetryPolicy {
  /** Attempts per chunk, the first included. */
  attempts: number;
  /** Wait before the second attempt; doubles after each failure. */
  backoffMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 3, backoffMs: 50 };

/**
 * Runs `operation` until it succeeds or `policy.attempts` attempts failed
 * (then the last error is thrown), waiting `backoffMs`, doubling, between
 * attempts. An aborted `signal` ends the retries: the last error is thrown,
 * or ERR_ABORTED when it fires during a wait.
 */
export async function withRetry<T>(
  operation: () => Promise<T>,
  policy: RetryPolicy,
  signal?: AbortSignal,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (attempt >= policy.attempts || signal?.aborted) throw error;
      await delay(policy.backoffMs * 2 ** (attempt - 1), signal);
    }
  }
}
