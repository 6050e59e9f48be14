import { readFileSync } from "node:fs";
import { fromSystemError, R3mapError } from "@r3map/core";

/** `--tls`: off, offered (NBD STARTTLS for clients that want it), or required. */
export type TlsMode = "off" | "on" | "require";

export interface TlsFiles {
  tls?: TlsMode;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}

/** What the servers get: PEM bytes, and whether clients must present a certificate signed by `ca`. */
export interface ServerTls {
  mode: "on" | "require";
  cert: Buffer;
  key: Buffer;
  ca: Buffer | undefined;
}

/** A certificate file the user named; one that cannot be read is a usage error. */
function read(path: string, option: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const system = fromSystemError(error, `${option}: cannot read ${path}`);
    throw new R3mapError("ERR_INVALID_ARGUMENT", system.message, { cause: error });
  }
}

/**
 * Reads the certificate files and checks that the options fit together. With
 * a certificate and no --tls, TLS is required: offering it to clients that may
 * skip it protects no one. Undefined when TLS is off.
 */
export function loadServerTls(options: TlsFiles): ServerTls | undefined {
  const mode = options.tls ?? (options.tlsCert ? "require" : "off");
  const usage = (message: string) => new R3mapError("ERR_INVALID_ARGUMENT", message);
  if (mode === "off") {
    if (options.tlsCert || options.tlsKey || options.tlsCa)
      throw usage("--tls=off contradicts --tls-cert/--tls-key/--tls-ca; drop one or the other");
    return undefined;
  }
  if (!options.tlsCert || !options.tlsKey)
    throw usage(`--tls=${mode} needs --tls-cert and --tls-key (PEM files: the server's certificate and key)`);
  return {
    mode,
    cert: read(options.tlsCert, "--tls-cert"),
    key: read(options.tlsKey, "--tls-key"),
    ca: options.tlsCa ? read(options.tlsCa, "--tls-ca") : undefined,
  };
}
