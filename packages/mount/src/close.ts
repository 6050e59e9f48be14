import * as fs from "node:fs";
import { delay, formatBytes, R3mapError } from "@r3map/core";
import type { Device } from "./device.js";
import type { MountEngine } from "./engine.js";

/** How `Mount.close` deals with a remote it cannot reach. */
export interface CloseOptions {
  /**
   * Keep retrying the final push — 0.5 s after a failed attempt, doubling up
   * to 5 s — until it succeeds or this signal aborts. Without it, one attempt
   * (each bounded by the mount's `timeoutMs`).
   */
  retryUntil?: AbortSignal;
  /**
   * Where to save every unpushed chunk when the push fails (crash-consistently,
   * never over an existing file: `file-1`, … then), for `recover` to push
   * later. It is written as soon as the first attempt fails — a process
   * killed while it retries loses nothing — and removed again if a retry
   * pushes everything.
   */
  recoveryFile?: string;
  /** Called after each failed attempt that will be retried. */
  onRetry?: (status: CloseRetryStatus) => void;
}

/** Where a close that keeps retrying stands. */
export interface CloseRetryStatus {
  /** Attempts made so far. */
  attempt: number;
  /** Chunks written and not yet on the remote, and their bytes. */
  unpushedChunks: number;
  unpushedBytes: number;
  /** Milliseconds until the next attempt. */
  nextDelayMs: number;
  /** Why the last attempt failed. */
  reason: string;
  /** The recovery file holding the unpushed chunks meanwhile, once written. */
  recoveryFile?: string;
}

/**
 * What a close did with the mount's changes: pushed them to the remote, or
 * saved those it could not push to a recovery file. (If it could do
 * neither, close rejects with `ERR_DATA_LOST`.)
 */
export type CloseResult =
  | { pushed: true }
  | { pushed: false; recoveryFile: string; chunks: number; bytes: number };

/** The wait after failed attempt `attempt` (1-based): 0.5 s, doubling, at most 5 s. */
export function closeRetryDelay(attempt: number): number {
  return Math.min(5000, 500 * 2 ** (attempt - 1));
}

/**
 * Closes a device and its engine so that no write the device acknowledged
 * is lost without saying so. The device is flushed and detached first (no
 * more writes), the chunks written out of the engine's sight collected; then
 * the final push is tried. If it fails, the unpushed chunks are saved to
 * `recoveryFile` at once, and with `retryUntil` the push is tried again and
 * again (the file is removed when one succeeds). Only then is the engine
 * closed.
 */
export async function closeSafely(
  engine: MountEngine,
  device: Device,
  options: CloseOptions = {},
): Promise<CloseResult> {
  let deviceFailure: unknown;
  try {
    // A failure here is the push behind a path device's fsync: its writes reached the engine anyway.
    await device.flush().catch(() => {});
    // A slice's written pages are found by scanning its mapping, which closing removes.
    engine.unpushed();
    await device.close();
  } catch (error) {
    deviceFailure = error;
  }
  let failure = await pushOnce(engine);
  let saved: Saved | undefined;
  let saveFailure: unknown;
  if (failure !== undefined && options.recoveryFile !== undefined && engine.unpushed().length > 0) {
    try {
      saved = await engine.saveUnpushed(options.recoveryFile);
    } catch (error) {
      saveFailure = error;
    }
  }
  if (failure !== undefined) failure = await retryPush(engine, options, failure, saved?.file);
  if (failure === undefined) {
    // Everything is on the remote (synced): the saved copy would only confuse.
    if (saved) await fs.promises.rm(saved.file, { force: true });
    await engine.close();
    if (deviceFailure !== undefined) throw deviceFailure;
    return { pushed: true };
  }
  await closeWithin(engine);
  if (saved) return { pushed: false, recoveryFile: saved.file, chunks: saved.chunks, bytes: saved.bytes };
  const unpushed = engine.unpushed();
  if (unpushed.length === 0) {
    throw new R3mapError(
      "ERR_REMOTE_FAILED",
      `every write reached the remote when it was made, but the remote did not confirm them durable: ${messageOf(failure)}`,
      { cause: failure },
    );
  }
  const what = `${unpushed.length} chunk(s) (${formatBytes(bytesOf(engine, unpushed))}) written to the mount could not be pushed to the remote (${messageOf(failure)})`;
  if (engine.persistsUnpushed) {
    throw new R3mapError(
      "ERR_REMOTE_FAILED",
      `${what}; they stay in the cache and its state file, and the next mount over them pushes them`,
      { cause: failure },
    );
  }
  if (saveFailure !== undefined) {
    throw new R3mapError(
      "ERR_DATA_LOST",
      `${what}, and saving them to ${options.recoveryFile} failed too (${messageOf(saveFailure)}): they are lost`,
      { cause: saveFailure },
    );
  }
  throw new R3mapError(
    "ERR_DATA_LOST",
    `${what} and are lost; close with retryUntil to keep trying, or with recoveryFile to save them`,
    { cause: failure },
  );
}

type Saved = Awaited<ReturnType<MountEngine["saveUnpushed"]>>;

/** One push of everything: undefined when it succeeded, else why it failed. */
async function pushOnce(engine: MountEngine): Promise<unknown> {
  try {
    await engine.sync();
    return undefined;
  } catch (failure) {
    return failure;
  }
}

/** Retries the push after `failure` while `retryUntil` allows: undefined once it succeeded, else the last failure. */
async function retryPush(
  engine: MountEngine,
  { retryUntil, onRetry }: CloseOptions,
  failure: unknown,
  recoveryFile: string | undefined,
): Promise<unknown> {
  if (!retryUntil) return failure;
  const stopped = aborted(retryUntil);
  for (let attempt = 1; !retryUntil.aborted; attempt++) {
    const nextDelayMs = closeRetryDelay(attempt);
    const unpushed = engine.unpushed();
    onRetry?.({
      attempt,
      unpushedChunks: unpushed.length,
      unpushedBytes: bytesOf(engine, unpushed),
      nextDelayMs,
      reason: messageOf(failure),
      ...(recoveryFile !== undefined ? { recoveryFile } : {}),
    });
    try {
      await delay(nextDelayMs, retryUntil);
    } catch {
      break;
    }
    // An abort does not wait for the attempt under way (which may wait out a whole deadline).
    const attempted = await Promise.race([pushOnce(engine), stopped]);
    if (attempted === ABORTED) break;
    failure = attempted;
    if (failure === undefined) return undefined;
  }
  return failure;
}

const ABORTED = Symbol("aborted");

function aborted(signal: AbortSignal): Promise<typeof ABORTED> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(ABORTED);
    else signal.addEventListener("abort", () => resolve(ABORTED), { once: true });
  });
}

/**
 * Closes the engine without pushing (its changes are saved, or lost), giving
 * it a moment only: a remote that does not answer would otherwise hold the
 * close for another deadline in its goodbye (a last flush, a disconnect),
 * which nothing needs any more. What is left of it ends with its thread.
 */
async function closeWithin(engine: MountEngine): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    engine.close({ push: false }).catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, Math.min(engine.timeoutMs, GOODBYE_MS));
    }),
  ]);
  clearTimeout(timer);
}

/** The longest a close waits for the backends of an engine whose remote failed it. */
const GOODBYE_MS = 1000;

/** The bytes `chunks` of the engine's resource hold (the last chunk may be short). */
function bytesOf(engine: MountEngine, chunks: readonly number[]): number {
  return chunks.reduce(
    (sum, chunk) => sum + Math.min(engine.chunkSize, engine.size - chunk * engine.chunkSize),
    0,
  );
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
