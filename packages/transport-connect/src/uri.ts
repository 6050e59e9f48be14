import { readFileSync } from "node:fs";
import { fromSystemError, R3mapError, registerBackendScheme, sizeParam } from "@r3map/core";
import { ConnectBackend, type ConnectClientOptions } from "./client.js";

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw fromSystemError(error, `cannot read the ${what} file "${path}"`);
  }
}

function integerParam(url: URL, name: string): number | undefined {
  const value = url.searchParams.get(name);
  if (value === null) return undefined;
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number <= 0) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `the "${name}" parameter must be a positive integer, got "${value}"`,
    );
  }
  return number;
}

/**
 * Client options from `r3map+h2c://host:port` or `r3map+https://host:port`
 * with parameters `token`, `ca`, `cert`, `key` (PEM file paths), `sessions`,
 * `protocol=grpc|connect`, `size` (for original servers), `timeoutMs`,
 * `concurrency`, `maxRequest` (a size like 4MiB).
 */
export function clientOptionsFromUri(uri: string | URL): ConnectClientOptions {
  const url = typeof uri === "string" ? new URL(uri) : uri;
  const scheme = url.protocol.replace(/:$/, "").toLowerCase();
  if (scheme !== "r3map+h2c" && scheme !== "r3map+https") {
    throw new R3mapError(
      "ERR_UNKNOWN_SCHEME",
      `expected an r3map+h2c: or r3map+https: URI, got "${url.protocol}"`,
    );
  }
  if (!url.port)
    throw new R3mapError("ERR_INVALID_ARGUMENT", `${url.href} needs a port (r3map+h2c://host:port)`);
  const secure = scheme === "r3map+https";
  const protocol = url.searchParams.get("protocol") ?? "grpc";
  if (protocol !== "grpc" && protocol !== "connect") {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `protocol must be grpc or connect, got "${protocol}"`);
  }
  const tlsFiles = ["ca", "cert", "key"].filter((name) => url.searchParams.has(name));
  if (!secure && tlsFiles.length > 0) {
    throw new R3mapError("ERR_INVALID_ARGUMENT", `${tlsFiles.join(", ")} need an r3map+https: URI`);
  }
  const file = (name: "ca" | "cert" | "key", what: string) => {
    const path = url.searchParams.get(name);
    return path === null ? {} : { [name]: readPem(path, what) };
  };
  const size = sizeParam(url, "size");
  const maxRequestBytes = sizeParam(url, "maxRequest");
  const token = url.searchParams.get("token");
  const sessions = integerParam(url, "sessions");
  const timeoutMs = integerParam(url, "timeoutMs");
  const concurrency = integerParam(url, "concurrency");
  return {
    baseUrl: `${secure ? "https" : "http"}://${url.host}`,
    protocol,
    ...(secure
      ? {
          tls: {
            ...file("ca", "CA certificate"),
            ...file("cert", "client certificate"),
            ...file("key", "client key"),
          },
        }
      : {}),
    ...(token === null ? {} : { token }),
    ...(size === undefined ? {} : { size }),
    ...(maxRequestBytes === undefined ? {} : { maxRequestBytes }),
    ...(sessions === undefined ? {} : { sessions }),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    ...(concurrency === undefined ? {} : { maxConcurrency: concurrency }),
  };
}

for (const scheme of ["r3map+h2c", "r3map+https"]) {
  registerBackendScheme(scheme, (url) => ConnectBackend.connect(clientOptionsFromUri(url)), {
    network: true,
  });
}
