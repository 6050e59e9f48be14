import { type ErrorCode, fromSystemError, R3mapError } from "@r3map/core";
import { CommanderError } from "commander";

/**
 * Exit statuses of every r3map binary. Scripts may rely on them; never
 * renumber one. A forced exit by a second signal is 128 + the signal number,
 * as shells report it (130 for SIGINT, 143 for SIGTERM).
 */
export const ExitStatus = {
  /** Done, or closed cleanly after a signal. */
  OK: 0,
  /** A failure no other status describes: I/O errors, and unexpected errors (a bug: rerun with --debug). */
  FAILURE: 1,
  /** Bad usage: an unknown option, a malformed or out-of-range value, an unusable URI. */
  USAGE: 2,
  /** The remote cannot be reached, or did not answer in time. */
  UNREACHABLE: 3,
  /** The remote answered with an error, broke the protocol, or sent data that failed a check. */
  REMOTE: 4,
  /** This machine or the resource cannot do it: a missing privilege or kernel feature, an unsupported or read-only operation. */
  UNABLE: 5,
  /** The local or remote store is full. */
  NO_SPACE: 6,
  /** The resource is taken by someone else right now (a migration under way): try again later. */
  BUSY: 7,
} as const;

/** The status each R3mapError code exits with. */
export const exitStatusByCode: Readonly<Record<ErrorCode, number>> = {
  ERR_INVALID_ARGUMENT: ExitStatus.USAGE,
  ERR_UNKNOWN_SCHEME: ExitStatus.USAGE,
  ERR_MISALIGNED: ExitStatus.USAGE,
  ERR_OUT_OF_RANGE: ExitStatus.USAGE,
  ERR_REMOTE_UNREACHABLE: ExitStatus.UNREACHABLE,
  ERR_TIMEOUT: ExitStatus.UNREACHABLE,
  ERR_REMOTE_FAILED: ExitStatus.REMOTE,
  ERR_PROTOCOL: ExitStatus.REMOTE,
  ERR_INTEGRITY: ExitStatus.REMOTE,
  ERR_PERMISSION: ExitStatus.UNABLE,
  ERR_KERNEL_FEATURE_MISSING: ExitStatus.UNABLE,
  ERR_NOT_SUPPORTED: ExitStatus.UNABLE,
  ERR_READ_ONLY: ExitStatus.UNABLE,
  ERR_NO_SPACE: ExitStatus.NO_SPACE,
  ERR_IO: ExitStatus.FAILURE,
  ERR_CLOSED: ExitStatus.FAILURE,
  ERR_ABORTED: ExitStatus.FAILURE,
  ERR_BUSY: ExitStatus.BUSY,
};

/** The exit status for an error: by its R3mapError code, as a usage error, or by its errno. */
export function exitStatusOf(error: unknown): number {
  if (error instanceof R3mapError) return exitStatusByCode[error.code];
  if (error instanceof CommanderError) return ExitStatus.USAGE;
  if (hasErrno(error)) return exitStatusByCode[fromSystemError(error, "").code];
  return ExitStatus.FAILURE;
}

/** An operating-system error (`fs`, `net`), which carries an errno name such as `ENOENT`. */
export function hasErrno(error: unknown): error is Error & { code: string } {
  const code = (error as { code?: unknown } | null)?.code;
  return error instanceof Error && typeof code === "string" && /^E[A-Z0-9]+$/.test(code);
}
