import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/**
 * Which bearer tokens a server accepts: a list of secrets, or a function that
 * decides (e.g. looks the token up in a database).
 */
export type TokenCheck = readonly string[] | ((token: string) => boolean | Promise<boolean>);

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

/** Compares in constant time so that the answer time does not leak a prefix of a valid token. */
function matcher(tokens: readonly string[]): (token: string) => boolean {
  const digests = tokens.map(digest);
  return (token) => {
    const presented = digest(token);
    let found = false;
    for (const candidate of digests) found = timingSafeEqual(candidate, presented) || found;
    return found;
  };
}

/**
 * Server interceptor: refuses every call without `Authorization: Bearer <token>`
 * carrying an accepted token with UNAUTHENTICATED, before the handler runs, so
 * an unauthenticated request never reaches the backend.
 */
export function bearerAuthInterceptor(check: TokenCheck): Interceptor {
  const accepts = typeof check === "function" ? check : matcher(check);
  return (next) => async (request) => {
    const header = request.header.get("authorization") ?? "";
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match || !(await accepts(match[1]!))) {
      throw new ConnectError(
        "a valid bearer token is required (Authorization: Bearer <token>)",
        Code.Unauthenticated,
      );
    }
    return next(request);
  };
}

/** Client interceptor: sends the token with every call. */
export function bearerTokenInterceptor(token: string): Interceptor {
  const value = `Bearer ${token}`;
  return (next) => (request) => {
    request.header.set("authorization", value);
    return next(request);
  };
}
