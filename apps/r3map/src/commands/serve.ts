import { openBackend } from "@r3map/core";
import { keepBackendFromChildren } from "@r3map/native";
import { NbdServer } from "@r3map/nbd";
import { ConnectServer } from "@r3map/transport-connect";
import { importSchemes, parseAddress } from "../options.js";
import { closeOnSignals } from "../shutdown.js";

export interface ServeOptions {
  nbd?: string;
  export: string;
  connect?: string;
  token?: string[];
  schemes?: string[];
  json?: boolean;
}

const say = (text: string) => process.stderr.write(`${text}\n`);

/** Serves a backend (given by URI) over NBD and/or Connect until a signal arrives. */
export async function serve(uri: string, options: ServeOptions): Promise<void> {
  await importSchemes(options.schemes);
  const backend = await openBackend(uri);
  keepBackendFromChildren(backend); // a memory export stays out of any child this process spawns
  const endpoints: Record<string, string> = {};
  const closers: Array<() => Promise<void>> = [];
  if (options.nbd !== undefined || options.connect === undefined) {
    const server = new NbdServer({ exports: [{ name: options.export, backend, description: uri }] });
    const address = await server.listen(parseAddress(options.nbd ?? "127.0.0.1:10809"));
    endpoints.nbd =
      typeof address === "string"
        ? `nbd+unix:///${options.export}?socket=${address}`
        : `nbd://${address.address}:${address.port}/${options.export}`;
    closers.push(() => server.close());
  }
  if (options.connect !== undefined) {
    const { host, port } = parseAddress(options.connect) as { host: string; port: number };
    const server = await ConnectServer.listen({
      backend,
      host,
      port,
      ...(options.token?.length ? { tokens: options.token } : {}),
    });
    endpoints.connect = server.url;
    closers.push(() => server.close());
  }
  // Before announcing the endpoints: a signal sent as soon as they are read must close gracefully.
  closeOnSignals(async () => {
    await Promise.all(closers.map((close) => close()));
    await backend.close();
  }, say);
  if (options.json) process.stdout.write(`${JSON.stringify({ size: backend.size, ...endpoints })}\n`);
  for (const [kind, endpoint] of Object.entries(endpoints)) say(`serving ${uri} over ${kind} at ${endpoint}`);
}
