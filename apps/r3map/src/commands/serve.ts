import { resolve } from "node:path";
import {
  type Address,
  addExamples,
  addressOption,
  closeOnSignals,
  formatAddress,
  type Output,
  outputFor,
  readTokens,
  watchParent,
} from "@r3map/cli-kit";
import { type Backend, type DigestSource, formatBytes, openBackend, R3mapError } from "@r3map/core";
import { backendDigester, keepBackendFromChildren } from "@r3map/native";
import { NbdServer } from "@r3map/nbd";
import { ConnectServer } from "@r3map/transport-connect";
import { type Command, Option } from "commander";
import { checkExposure, endpointExposures } from "../exposure.js";
import { importSchemes, jsonOption, schemeOption, tokenFileOption, tokenOption } from "../options.js";
import { writePidfile } from "../pidfile.js";
import { ReadOnlyBackend } from "../read-only.js";
import { warnIfTokenVisible } from "../remote-uri.js";
import { loadServerTls, type ServerTls, type TlsFiles } from "../serve-tls.js";

export interface ServeOptions extends TlsFiles {
  nbd?: Address;
  export: string;
  connect?: Address;
  token: string[];
  tokenFile: string[];
  readOnly?: boolean;
  insecure?: boolean;
  pidfile?: string;
  exitWithParent?: boolean;
  printUri?: boolean;
  scheme: string[];
  json?: boolean;
}

const DEFAULT_NBD: Address = { host: "127.0.0.1", port: 10809 };

export function serveCommand(program: Command): void {
  const command = program
    .command("serve")
    .summary("serve a backend over NBD and/or Connect until SIGINT/SIGTERM")
    .description(
      "Serve a backend (memory:?size=1GiB, file:///disk.img, dir:///chunks?size=…, redis://…) over NBD (the default, on 127.0.0.1:10809) and/or Connect/gRPC, until SIGINT/SIGTERM. Listening beyond this machine needs authentication — client certificates (--tls-ca) or, for Connect, a token — or --insecure.",
    )
    .argument("<backend>", "backend URI")
    .addOption(
      addressOption(
        "--nbd <address>",
        "NBD listen address: host:port, :port or a socket path (default 127.0.0.1:10809 without --connect)",
      ),
    )
    .option("--export <name>", "NBD export name", "default")
    .addOption(
      addressOption("--connect <address>", "Connect/gRPC listen address: host:port, :port or a socket path"),
    )
    .addOption(
      new Option(
        "--tls <mode>",
        "TLS: off, on (NBD: offered, STARTTLS) or require (default: require with --tls-cert)",
      ).choices(["off", "on", "require"]),
    )
    .option("--tls-cert <file>", "the server's certificate (PEM)")
    .option("--tls-key <file>", "the server's private key (PEM)")
    .option("--tls-ca <file>", "CA (PEM) that must have signed every client's certificate (mutual TLS)")
    .addOption(tokenFileOption())
    .addOption(tokenOption())
    .option("--read-only", "refuse writes")
    .option("--insecure", "allow listening beyond this machine without authentication")
    .option("--pidfile <file>", "write the process id here once serving; removed on exit")
    .option("--exit-with-parent", "close when the process that started this one exits")
    .addOption(
      new Option("--print-uri", "print the URI of each endpoint on stdout, one per line").conflicts("json"),
    )
    .addOption(jsonOption())
    .addOption(schemeOption())
    .action((uri: string, options: ServeOptions, self: Command) => serve(uri, options, outputFor(self)));
  addExamples(command, [
    {
      what: "Serve 1 GiB of memory over NBD at nbd://127.0.0.1:10809/default",
      line: "r3map serve 'memory:?size=1GiB'",
    },
    {
      what: "Create a 1 GiB disk image and serve it read-only on a UNIX socket as export disk",
      line: "r3map serve 'file:///tmp/disk.img?size=1GiB&create=1' --nbd /tmp/nbd.sock --export disk --read-only",
    },
    {
      what: "Serve over Connect/gRPC with a token from the environment; print only the URI",
      line: "R3MAP_TOKEN=change-me r3map serve 'memory:?size=1GiB' --connect 127.0.0.1:1337 --print-uri",
    },
    {
      what: "Require TLS and client certificates signed by ca-cert.pem (files named as nbdkit names them)",
      line: "r3map serve 'memory:?size=1GiB' --tls=require --tls-cert server-cert.pem --tls-key server-key.pem --tls-ca ca-cert.pem",
    },
  ]);
}

/** Serves a backend (given by URI) over NBD and/or Connect until a signal arrives. */
export async function serve(uri: string, options: ServeOptions, output: Output): Promise<void> {
  const tls = loadServerTls(options);
  const tokens = readTokens({ tokens: options.token, tokenFiles: options.tokenFile });
  warnIfTokenVisible(options.token, output);
  const nbdAddress = options.nbd ?? (options.connect ? undefined : DEFAULT_NBD);
  const warnings = checkExposure(
    endpointExposures(nbdAddress, options.connect, tls, tokens),
    options.insecure === true,
  );
  if (!options.connect && (options.token.length > 0 || options.tokenFile.length > 0))
    output.warning(
      "tokens apply to Connect only (--connect); NBD clients authenticate with certificates (--tls-ca)",
    );

  await importSchemes(options.scheme);
  const opened = await openBackend(uri);
  const closers: Array<() => Promise<void>> = [() => opened.close()];
  const closeAll = async () => {
    for (const close of closers.splice(0).reverse()) await close();
  };
  try {
    if (opened.size === 0) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `${uri} is empty (0 bytes): there is nothing to serve; give it a size (e.g. memory:?size=64MiB)`,
      );
    }
    keepBackendFromChildren(opened); // a memory export stays out of any child this process spawns
    const backend: Backend = options.readOnly ? new ReadOnlyBackend(opened) : opened;
    const endpoints: Record<string, string> = {};
    if (nbdAddress) {
      endpoints.nbd = await listenNbd(backend, uri, nbdAddress, options, tls, closers);
    }
    if (options.connect) {
      // Digests straight from the opened backend's file or memory, also under --read-only's wrapper.
      const served = { backend, digests: backendDigester(opened) };
      endpoints.connect = await listenConnect(served, options.connect, tls, tokens, closers);
    }
    if (options.pidfile) {
      const remove = writePidfile(options.pidfile);
      closers.push(async () => remove());
    }
    // Before announcing the endpoints: a signal sent as soon as they are read must close gracefully.
    const control = closeOnSignals(async () => {
      await closeAll();
      output.done();
    }, output);
    if (options.exitWithParent) watchParent(() => control.close("the parent process exited"));
    for (const warning of warnings) output.warning(warning);
    if (options.printUri)
      process.stdout.write(
        Object.values(endpoints)
          .map((e) => `${e}\n`)
          .join(""),
      );
    output.start({ uri, size: backend.size, readOnly: backend.readOnly === true, ...endpoints });
    for (const [kind, endpoint] of Object.entries(endpoints)) {
      output.say(`serving ${uri} (${formatBytes(backend.size)}) over ${kind} at ${endpoint}`);
    }
  } catch (error) {
    await closeAll().catch(() => {});
    throw error;
  }
}

async function listenNbd(
  backend: Backend,
  uri: string,
  address: Address,
  options: ServeOptions,
  tls: ServerTls | undefined,
  closers: Array<() => Promise<void>>,
): Promise<string> {
  const server = new NbdServer({
    exports: [{ name: options.export, backend, description: uri, readOnly: options.readOnly === true }],
    ...(tls
      ? {
          tls: {
            cert: tls.cert,
            key: tls.key,
            ...(tls.ca ? { ca: tls.ca, requestCert: true, rejectUnauthorized: true } : {}),
          },
          tlsRequired: tls.mode === "require",
        }
      : {}),
  });
  const bound = await server.listen(address);
  closers.push(() => server.close());
  const scheme = tls ? "nbds" : "nbd";
  const name = encodeURIComponent(options.export);
  if (typeof bound === "string") return `${scheme}+unix:///${name}?socket=${resolve(bound)}`;
  return `${scheme}://${formatAddress({ host: bound.address, port: bound.port })}/${name}`;
}

async function listenConnect(
  served: { backend: Backend; digests: DigestSource },
  address: Address,
  tls: ServerTls | undefined,
  tokens: readonly string[],
  closers: Array<() => Promise<void>>,
): Promise<string> {
  const server = await ConnectServer.listen({
    ...served,
    ...("path" in address ? { path: address.path } : { host: address.host, port: address.port }),
    ...(tls ? { tls: { cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca } : {}) } } : {}),
    ...(tokens.length > 0 ? { tokens } : {}),
  });
  closers.push(() => server.close());
  // gRPC clients name a UNIX socket unix:PATH.
  return server.path === undefined ? server.url : `unix:${resolve(server.path)}`;
}
