import { R3mapError } from "@r3map/core";

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

/** True for "the object does not exist" (NoSuchKey, or a 404 without a body as HEAD gives). */
export function isNotFound(error: unknown): boolean {
  const e = error as SdkError | null;
  return (
    e?.name === "NoSuchKey" ||
    e?.name === "NotFound" ||
    (e?.$metadata?.httpStatusCode === 404 && e?.name !== "NoSuchBucket")
  );
}

/**
 * Maps an AWS SDK failure to an R3mapError whose code says what to do:
 * unreachable endpoint, timeout, permission (credentials, policy), missing
 * bucket (create it or add ?create=1), or a failed request.
 */
export function s3Error(error: unknown, what: string, closed: boolean): R3mapError {
  if (error instanceof R3mapError) return error;
  const e = (error ?? {}) as SdkError;
  const name = e.name ?? "";
  const code = e.code ?? "";
  const status = e.$metadata?.httpStatusCode;
  const detail = `${what}: ${name ? `${name}: ` : ""}${e.message ?? String(error)}`;
  const options = { cause: error };
  if (closed) return new R3mapError("ERR_CLOSED", `${what}: the S3 backend is closed`, options);
  if (
    name === "TimeoutError" ||
    name === "RequestTimeout" ||
    code === "ETIMEDOUT" ||
    name === "RequestTimeoutException"
  ) {
    return new R3mapError("ERR_TIMEOUT", `${detail} (raise ?timeoutMs= or check the endpoint)`, options);
  }
  if (
    ["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EPIPE", "EAI_AGAIN"].includes(
      code,
    )
  ) {
    return new R3mapError(
      "ERR_REMOTE_UNREACHABLE",
      `${detail} (is the S3 endpoint running and reachable?)`,
      options,
    );
  }
  if (
    status === 401 ||
    status === 403 ||
    [
      "AccessDenied",
      "InvalidAccessKeyId",
      "SignatureDoesNotMatch",
      "CredentialsProviderError",
      "ExpiredToken",
    ].includes(name)
  ) {
    return new R3mapError(
      "ERR_PERMISSION",
      `${detail} (check the credentials and the bucket policy)`,
      options,
    );
  }
  if (name === "NoSuchBucket") {
    return new R3mapError(
      "ERR_REMOTE_FAILED",
      `${detail} (create the bucket, or open the URI with &create=1)`,
      options,
    );
  }
  if (name === "QuotaExceeded" || status === 507) return new R3mapError("ERR_NO_SPACE", detail, options);
  return new R3mapError("ERR_REMOTE_FAILED", detail, options);
}
