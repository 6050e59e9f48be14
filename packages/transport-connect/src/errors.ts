import { Code, ConnectError } from "@connectrpc/connect";
import { type ErrorCode, R3mapError } from "@r3map/core";
import { OVERLOADED_HEADER } from "./call-limits.js";

/**
 * Carries the exact R3mapError code next to the Connect code (as a header for
 * Connect, a trailer for gRPC), so an r3map client restores the code the
 * server's backend raised; other clients see a fitting standard code.
 */
export const ERROR_CODE_HEADER = "r3map-error-code";

const connectCodeByErrorCode: Record<ErrorCode, Code> = {
  ERR_MISALIGNED: Code.InvalidArgument,
  ERR_OUT_OF_RANGE: Code.OutOfRange,
  ERR_INVALID_ARGUMENT: Code.InvalidArgument,
  ERR_CLOSED: Code.FailedPrecondition,
  ERR_READ_ONLY: Code.PermissionDenied,
  ERR_NOT_SUPPORTED: Code.Unimplemented,
  ERR_REMOTE_UNREACHABLE: Code.Unavailable,
  ERR_REMOTE_FAILED: Code.Internal,
  ERR_TIMEOUT: Code.DeadlineExceeded,
  ERR_ABORTED: Code.Canceled,
  ERR_PROTOCOL: Code.Internal,
  ERR_INTEGRITY: Code.DataLoss,
  ERR_KERNEL_FEATURE_MISSING: Code.Unimplemented,
  ERR_PERMISSION: Code.PermissionDenied,
  ERR_UNKNOWN_SCHEME: Code.InvalidArgument,
  ERR_NO_SPACE: Code.ResourceExhausted,
  ERR_IO: Code.Internal,
  ERR_BUSY: Code.FailedPrecondition,
  ERR_DATA_LOST: Code.DataLoss,
};

/** Server side: the ConnectError a handler throws for anything a backend raised. */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof R3mapError) {
    return new ConnectError(
      error.message,
      connectCodeByErrorCode[error.code],
      { [ERROR_CODE_HEADER]: error.code },
      undefined,
      error,
    );
  }
  // Unexpected failures keep their message but not their stack: the peer may be untrusted.
  return new ConnectError(
    error instanceof Error ? error.message : String(error),
    Code.Internal,
    undefined,
    undefined,
    error,
  );
}

const errorCodeByConnectCode: Partial<Record<Code, ErrorCode>> = {
  [Code.Canceled]: "ERR_ABORTED",
  [Code.InvalidArgument]: "ERR_INVALID_ARGUMENT",
  [Code.DeadlineExceeded]: "ERR_TIMEOUT",
  [Code.NotFound]: "ERR_REMOTE_FAILED",
  [Code.PermissionDenied]: "ERR_PERMISSION",
  // Without the r3map header this is a message over the peer's size limit.
  [Code.ResourceExhausted]: "ERR_INVALID_ARGUMENT",
  [Code.OutOfRange]: "ERR_OUT_OF_RANGE",
  [Code.Unimplemented]: "ERR_NOT_SUPPORTED",
  [Code.Unavailable]: "ERR_REMOTE_UNREACHABLE",
  // connect-node reports a connection reset mid-call as ABORTED.
  [Code.Aborted]: "ERR_REMOTE_UNREACHABLE",
  [Code.DataLoss]: "ERR_INTEGRITY",
  [Code.Unauthenticated]: "ERR_PERMISSION",
};

const hints: Partial<Record<ErrorCode, string>> = {
  ERR_REMOTE_UNREACHABLE:
    "check that the server runs and the address, TLS settings and certificates are right",
  ERR_TIMEOUT: "the server did not answer in time; raise timeoutMs or check the network",
  ERR_PERMISSION: "check the bearer token and client certificate",
};

/** Codes a server may report that mean something else on the client side. */
const remoteMeaning: Partial<Record<ErrorCode, ErrorCode>> = {
  // The server's backend is closed, not this client.
  ERR_CLOSED: "ERR_REMOTE_FAILED",
  ERR_REMOTE_UNREACHABLE: "ERR_REMOTE_FAILED",
};

function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(connectCodeByErrorCode, value);
}

const TLS_ERROR = /^(ERR_SSL_|ERR_TLS_|UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_|CERT_)|_CERT_|CERTIFICATE/;

/**
 * The TLS failure somewhere in an error's cause chain (a refused or missing
 * client certificate, an untrusted server certificate), as an R3mapError.
 */
export function tlsFailure(error: unknown, what: string): R3mapError | undefined {
  for (let cause = error, depth = 0; cause instanceof Error && depth < 8; cause = cause.cause, depth++) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === "string" && TLS_ERROR.test(code)) {
      const reason = (cause as { reason?: unknown }).reason;
      return new R3mapError(
        "ERR_PERMISSION",
        `${what} failed: TLS with the server failed (${typeof reason === "string" ? reason : code}); check the CA, client certificate and key`,
        { cause: error },
      );
    }
  }
  return undefined;
}

/** The server refused the call for load (calls or bytes in flight) before running it. */
export function overloaded(error: unknown): boolean {
  return (
    error instanceof ConnectError &&
    error.code === Code.ResourceExhausted &&
    error.metadata.get(OVERLOADED_HEADER) !== null
  );
}

/** Client side: the R3mapError for a failed call of `what` (e.g. "ReadAt"). */
export function fromConnectError(error: unknown, what: string): R3mapError {
  if (error instanceof R3mapError) return error;
  const tls = tlsFailure(error, what);
  if (tls) return tls;
  const connectError = ConnectError.from(error);
  const carried = connectError.metadata.get(ERROR_CODE_HEADER);
  let code: ErrorCode;
  let where = "";
  if (carried !== null && isErrorCode(carried)) {
    code = remoteMeaning[carried] ?? carried;
    where = "the server reported: ";
  } else if (overloaded(connectError)) {
    code = "ERR_REMOTE_FAILED";
    where = "the server is overloaded: ";
  } else {
    code = errorCodeByConnectCode[connectError.code] ?? "ERR_REMOTE_FAILED";
  }
  const hint = hints[code];
  return new R3mapError(
    code,
    `${what} failed (${Code[connectError.code]}): ${where}${connectError.rawMessage}${hint ? `; ${hint}` : ""}`,
    { cause: error },
  );
}
