import { R3mapError } from "@r3map/core";

/**
 * Maps an ioredis failure to an R3mapError whose code says what to do about
 * it: unreachable (retry later), timeout, permission (fix the URI's
 * credentials), no space (Redis maxmemory) or a failed command.
 */
export function redisError(error: unknown, what: string, closed: boolean): R3mapError {
  if (error instanceof R3mapError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const name = error instanceof Error ? error.name : "";
  const errno = (error as { code?: unknown } | null)?.code;
  const detail = `${what}: ${message}`;
  const options = { cause: error };
  if (closed) return new R3mapError("ERR_CLOSED", `${what}: the Redis backend is closed`, options);
  if (message === "Command timed out" || errno === "ETIMEDOUT") {
    return new R3mapError("ERR_TIMEOUT", `${detail} (raise ?timeoutMs= or check the server's load)`, options);
  }
  if (/^(NOAUTH|WRONGPASS|NOPERM)/.test(message)) {
    return new R3mapError("ERR_PERMISSION", `${detail} (check the user and password in the URI)`, options);
  }
  if (/^OOM/.test(message))
    return new R3mapError("ERR_NO_SPACE", `${detail} (the server reached maxmemory)`, options);
  if (
    name === "MaxRetriesPerRequestError" ||
    typeof errno === "string" ||
    /Connection is closed|None of startup nodes|Failed to refresh slots cache|Stream isn't writeable|CLUSTERDOWN|TRYAGAIN|LOADING/.test(
      message,
    )
  ) {
    return new R3mapError(
      "ERR_REMOTE_UNREACHABLE",
      `${detail} (is the Redis server running and reachable?)`,
      options,
    );
  }
  return new R3mapError("ERR_REMOTE_FAILED", detail, options);
}
