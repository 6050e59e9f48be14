import { R3mapError } from "@r3map/core";
import cassandra from "cassandra-driver";

const codes = cassandra.types.responseErrorCodes;

/**
 * Maps a cassandra-driver failure to an R3mapError whose code says what to do:
 * no node reachable, timeout (client or coordinator), permission (credentials,
 * grants), or a failed statement.
 */
export function cassandraError(error: unknown, what: string, closed: boolean): R3mapError {
  if (error instanceof R3mapError) return error;
  const e = (error ?? {}) as {
    name?: string;
    message?: string;
    code?: number;
    innerErrors?: Record<string, unknown>;
  };
  const detail = `${what}: ${e.message ?? String(error)}`;
  const options = { cause: error };
  if (closed) return new R3mapError("ERR_CLOSED", `${what}: the Cassandra backend is closed`, options);
  if (error instanceof cassandra.errors.OperationTimedOutError) {
    return new R3mapError(
      "ERR_TIMEOUT",
      `${detail} (raise ?timeoutMs= or check the cluster's load)`,
      options,
    );
  }
  if (error instanceof cassandra.errors.NoHostAvailableError) {
    const inner = Object.values(e.innerErrors ?? {});
    if (inner.length > 0 && inner.every((x) => x instanceof cassandra.errors.AuthenticationError)) {
      return new R3mapError("ERR_PERMISSION", `${detail} (check the user and password in the URI)`, options);
    }
    return new R3mapError(
      "ERR_REMOTE_UNREACHABLE",
      `${detail} (is Cassandra running and reachable?)`,
      options,
    );
  }
  if (error instanceof cassandra.errors.AuthenticationError) {
    return new R3mapError("ERR_PERMISSION", `${detail} (check the user and password in the URI)`, options);
  }
  if (error instanceof cassandra.errors.ResponseError) {
    switch (e.code) {
      case codes.badCredentials:
      case codes.unauthorized:
        return new R3mapError("ERR_PERMISSION", `${detail} (check the credentials and grants)`, options);
      case codes.writeTimeout:
      case codes.readTimeout:
        return new R3mapError("ERR_TIMEOUT", `${detail} (the replicas did not answer in time)`, options);
      case codes.unavailableException:
      case codes.overloaded:
      case codes.isBootstrapping:
        return new R3mapError(
          "ERR_REMOTE_UNREACHABLE",
          `${detail} (not enough replicas are up for the consistency level)`,
          options,
        );
    }
  }
  return new R3mapError("ERR_REMOTE_FAILED", detail, options);
}
