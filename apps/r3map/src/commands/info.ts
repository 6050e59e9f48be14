import { addExamples, type Output, outputFor, readTokens } from "@r3map/cli-kit";
import { type Backend, formatBytes, openBackend } from "@r3map/core";
import { listNbdExports, NbdClient, nbdProtocol } from "@r3map/nbd";
import { ConnectBackend } from "@r3map/transport-connect";
import type { Command } from "commander";
import { importSchemes, jsonOption, schemeOption, tokenFileOption } from "../options.js";
import { withToken } from "../remote-uri.js";

export interface InfoOptions {
  tokenFile: string[];
  scheme: string[];
  json?: boolean;
}

/** What `r3map info` reports; the `done` event carries it with --json. */
export interface RemoteReport {
  uri: string;
  transport: string;
  size: number;
  readOnly: boolean;
  /** Optional operations the remote offers: trim, write-zeroes, block-status, … */
  features: string[];
  /** NBD: the export's block size limits. */
  blockSizes?: { minimum: number; preferred: number; maximum: number };
  /** Connect: the server's chunk size (0: none) and largest payload per call. */
  chunkSize?: number;
  maxRequestBytes?: number;
  /** NBD: every export the server lists. */
  exports?: Array<{ name: string; description: string }>;
}

export function infoCommand(program: Command): void {
  const command = program
    .command("info")
    .summary("tell what a remote is: size, block and chunk sizes, transport, exports, read-only")
    .description(
      "Connect to a remote (or open any backend URI) and report its size, block or chunk sizes, transport, the optional operations it offers, whether it is read-only, and — for NBD — every export the server lists.",
    )
    .argument("<uri>", "remote or backend URI")
    .addOption(tokenFileOption())
    .addOption(jsonOption())
    .addOption(schemeOption())
    .action((uri: string, options: InfoOptions, self: Command) => info(uri, options, outputFor(self)));
  addExamples(command, [
    {
      what: "Describe an NBD export and list the server's exports",
      line: "r3map info nbd://127.0.0.1:10809/default",
    },
    {
      what: "Describe a Connect remote as JSON, its token from the environment",
      line: "R3MAP_TOKEN=change-me r3map info r3map+h2c://127.0.0.1:1337 --json",
    },
    { what: "Describe any backend URI", line: "r3map info 'memory:?size=64MiB'" },
  ]);
}

export async function info(uri: string, options: InfoOptions, output: Output): Promise<void> {
  await importSchemes(options.scheme);
  const backend = await openBackend(withToken(uri, readTokens({ tokenFiles: options.tokenFile })));
  let report: RemoteReport;
  try {
    report = await describe(uri, backend);
  } finally {
    await backend.close();
  }
  output.done({ ...report }, formatReport(report));
}

async function describe(uri: string, backend: Backend): Promise<RemoteReport> {
  const features = [
    ...(backend.trim ? ["trim"] : []),
    ...(backend.writeZeroes ? ["write-zeroes"] : []),
    ...(backend.blockStatus ? ["block-status"] : []),
  ];
  const base = { uri, size: backend.size, readOnly: backend.readOnly === true, features };
  if (backend instanceof NbdClient) {
    const flags = backend.info.flags;
    if (flags & nbdProtocol.TF.CAN_MULTI_CONN) features.push("multi-conn");
    if (backend.info.structured) features.push("structured-replies");
    const scheme = new URL(uri).protocol.replace(/:$/, "");
    return {
      ...base,
      transport: scheme,
      blockSizes: {
        minimum: backend.info.minimumBlockSize,
        preferred: backend.info.preferredBlockSize,
        maximum: backend.info.maximumBlockSize,
      },
      exports: await listNbdExports(uri),
    };
  }
  if (backend instanceof ConnectBackend) {
    const remote = backend.info;
    for (const [name, on] of [
      ["read-stream", remote.readStream],
      ["progress", remote.progress],
      ["migration", remote.migration],
    ] as const) {
      if (on) features.push(name);
    }
    return {
      ...base,
      transport: new URL(uri).protocol.replace(/:$/, ""),
      chunkSize: remote.chunkSize,
      maxRequestBytes: remote.maxRequestBytes,
    };
  }
  return { ...base, transport: new URL(uri).protocol.replace(/:$/, "") };
}

/** The report as aligned lines, for people. */
export function formatReport(report: RemoteReport): string {
  const rows: Array<[string, string]> = [
    ["uri", report.uri],
    ["transport", report.transport],
    ["size", `${formatBytes(report.size)} (${report.size} bytes)`],
    ["read-only", report.readOnly ? "yes" : "no"],
  ];
  if (report.blockSizes) {
    const b = report.blockSizes;
    rows.push([
      "block sizes",
      `minimum ${formatBytes(b.minimum)}, preferred ${formatBytes(b.preferred)}, maximum ${formatBytes(b.maximum)}`,
    ]);
  }
  if (report.chunkSize !== undefined)
    rows.push(["chunk size", report.chunkSize ? formatBytes(report.chunkSize) : "none"]);
  if (report.maxRequestBytes !== undefined)
    rows.push(["largest request", formatBytes(report.maxRequestBytes)]);
  rows.push(["features", report.features.join(", ") || "none"]);
  for (const e of report.exports ?? [])
    rows.push(["export", e.description ? `${e.name} (${e.description})` : e.name]);
  return rows.map(([key, value]) => `${`${key}:`.padEnd(17)}${value}`).join("\n");
}
