/**
 * Turns the addon's system errors (Node-style: `code` = errno name, `syscall`)
 * into R3mapErrors, for the FUSE, loop, kernel-NBD and tape wrappers.
 */
import { fromSystemError, R3mapError } from "@r3map/core";

const privilegeHint = "run as root (CAP_SYS_ADMIN)";

export function mapNativeError(error: unknown, what: string): R3mapError {
  if (error instanceof R3mapError) return error;
  const errno = (error as { code?: unknown } | null)?.code;
  const detail = error instanceof Error ? error.message : String(error);
  if (errno === "ENOTTY" || errno === "EOPNOTSUPP") {
    return new R3mapError(
      "ERR_NOT_SUPPORTED",
      `${what}: ${detail} (the device does not support this operation)`,
      {
        cause: error,
        errno,
      },
    );
  }
  if (errno === "EPERM" || errno === "EACCES") {
    return new R3mapError("ERR_PERMISSION", `${what}: ${detail}; ${privilegeHint}`, { cause: error, errno });
  }
  return fromSystemError(error, what);
}

export function checkPositiveInteger(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `${name} must be a positive integer, got ${value}`);
  }
}

export function checkNonNegativeInteger(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `${name} must be a non-negative integer, got ${value}`);
  }
}
