/**
 * Typed errors with stable codes. Every error r3map raises on purpose is an
 * `R3mapError`; callers branch on `code`, never on the message.
 */

/** Stable error codes. Never rename one: users match on them. */
export type ErrorCode =
  /** An offset or length is not a multiple of the chunk size where whole chunks are required. */
  | "ERR_MISALIGNED"
  /** The request reaches past the end of the resource. */
  | "ERR_OUT_OF_RANGE"
  /** A malformed argument: negative, non-integer, wrong type, impossible option. */
  | "ERR_INVALID_ARGUMENT"
  /** The object was closed; open a new one. */
  | "ERR_CLOSED"
  /** A write to a read-only resource. */
  | "ERR_READ_ONLY"
  /** The operation is not offered by this backend or peer. */
  | "ERR_NOT_SUPPORTED"
  /** The remote could not be reached (connection refused, DNS, reset before reply). */
  | "ERR_REMOTE_UNREACHABLE"
  /** The remote answered with an error. */
  | "ERR_REMOTE_FAILED"
  /** A deadline passed. */
  | "ERR_TIMEOUT"
  /** The caller aborted the operation. */
  | "ERR_ABORTED"
  /** A peer broke the wire protocol (bad magic, truncated frame, impossible length). */
  | "ERR_PROTOCOL"
  /** Stored data failed an integrity check (authentication tag, checksum). */
  | "ERR_INTEGRITY"
  /** The kernel lacks a facility this operation needs. */
  | "ERR_KERNEL_FEATURE_MISSING"
  /** The process lacks a privilege this operation needs. */
  | "ERR_PERMISSION"
  /** No backend is registered for a URI scheme. */
  | "ERR_UNKNOWN_SCHEME"
  /** The local or remote store is full. */
  | "ERR_NO_SPACE"
  /** An I/O error from the operating system that fits no other code. */
  | "ERR_IO"
  /** The resource is taken by someone else right now (a migration already under way). */
  | "ERR_BUSY";

export interface R3mapErrorOptions {
  cause?: unknown;
  /** The errno name (`EIO`, `ENOSPC`, …) when the error came from a system call. */
  errno?: string;
}

export class R3mapError extends Error {
  override readonly name = "R3mapError";
  readonly code: ErrorCode;
  readonly errno: string | undefined;

  constructor(code: ErrorCode, message: string, options: R3mapErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.errno = options.errno;
  }
}

export function isR3mapError(error: unknown, code?: ErrorCode): error is R3mapError {
  return error instanceof R3mapError && (code === undefined || error.code === code);
}

const errnoByCode: Record<ErrorCode, string> = {
  ERR_MISALIGNED: "EINVAL",
  ERR_OUT_OF_RANGE: "EOVERFLOW",
  ERR_INVALID_ARGUMENT: "EINVAL",
  ERR_CLOSED: "ESHUTDOWN",
  ERR_READ_ONLY: "EPERM",
  ERR_NOT_SUPPORTED: "ENOTSUP",
  ERR_REMOTE_UNREACHABLE: "EIO",
  ERR_REMOTE_FAILED: "EIO",
  ERR_TIMEOUT: "EIO",
  ERR_ABORTED: "EINTR",
  ERR_PROTOCOL: "EIO",
  ERR_INTEGRITY: "EIO",
  ERR_KERNEL_FEATURE_MISSING: "ENOSYS",
  ERR_PERMISSION: "EPERM",
  ERR_UNKNOWN_SCHEME: "EINVAL",
  ERR_NO_SPACE: "ENOSPC",
  ERR_IO: "EIO",
  ERR_BUSY: "EBUSY",
};

/** Socket errnos: a device reports them as EIO, since a reader of a file or block device expects I/O errors. */
const networkErrnos = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/**
 * The errno name a device frontend (NBD reply, FUSE reply, uffd) should report
 * for an error thrown by a backend. Local system errors keep their own errno
 * (ENOSPC stays ENOSPC); failures of the remote become EIO, because a reader
 * of a file or block device expects I/O errors, not socket errors.
 */
export function errnoOf(error: unknown): string {
  if (error instanceof R3mapError) {
    return error.errno !== undefined && !networkErrnos.has(error.errno)
      ? error.errno
      : errnoByCode[error.code];
  }
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && /^E[A-Z0-9]+$/.test(code) && !networkErrnos.has(code)) return code;
  return "EIO";
}

/**
 * Wraps an operating-system error (`fs`, `net`) as an R3mapError with a code that
 * says what kind of failure it was, keeping the errno and the original as cause.
 */
export function fromSystemError(error: unknown, what: string): R3mapError {
  if (error instanceof R3mapError) return error;
  const errno = (error as { code?: unknown } | null)?.code;
  const name = typeof errno === "string" ? errno : undefined;
  const detail = error instanceof Error ? error.message : String(error);
  const code: ErrorCode =
    name === "ENOSPC" || name === "EDQUOT"
      ? "ERR_NO_SPACE"
      : name === "EACCES" || name === "EPERM"
        ? "ERR_PERMISSION"
        : name === "ECONNREFUSED" || name === "EHOSTUNREACH" || name === "ENETUNREACH" || name === "ENOTFOUND"
          ? "ERR_REMOTE_UNREACHABLE"
          : name === "EROFS"
            ? "ERR_READ_ONLY"
            : "ERR_IO";
  return new R3mapError(
    code,
    `${what}: ${detail}`,
    name === undefined ? { cause: error } : { cause: error, errno: name },
  );
}
