import { addExamples, type Output, outputFor, readTokens } from "@r3map/cli-kit";
import { formatBytes, readRecoveryFile } from "@r3map/core";
import { recover as recoverFile } from "@r3map/mount";
import type { Command } from "commander";
import { jsonOption, schemeOption, schemePackages, timeoutOption, tokenFileOption } from "../options.js";
import { withToken } from "../remote-uri.js";

export interface RecoverCommandOptions {
  remote?: string;
  /** Milliseconds. */
  timeout: number;
  tokenFile: string[];
  scheme: string[];
  json?: boolean;
}

export function recoverCommand(program: Command): void {
  const command = program
    .command("recover")
    .summary("push the writes a mount saved to a recovery file when its remote was away")
    .description(
      "Push a recovery file — the writes `r3map mount` saved at close because the remote could not take them — to the remote it names (or --remote), sync the remote, and only then remove the file. The file is checked whole first: from a damaged one nothing is pushed and it is kept. Run it before anyone else writes the remote: its chunks replace what the remote holds.",
    )
    .argument("<file>", "the recovery file (printed by `r3map mount`, and in its done event)")
    .option("--remote <uri>", "push to this remote instead of the one the file names (the same resource)")
    .addOption(timeoutOption("one request"))
    .addOption(tokenFileOption())
    .addOption(jsonOption())
    .addOption(schemeOption())
    .action((file: string, options: RecoverCommandOptions, self: Command) =>
      recover(file, options, outputFor(self)),
    );
  addExamples(command, [
    {
      what: "Push the writes a mount saved, to the remote the file names",
      line: "r3map recover ~/.local/state/r3map/recovery/2026-01-01T00-00-00-000Z-4242.r3rec",
    },
    {
      what: "Push them to the same export served at another address, with NDJSON events",
      line: "r3map recover unpushed.r3rec --remote nbd://10.0.0.2:10809/default --json",
    },
  ]);
}

export async function recover(file: string, options: RecoverCommandOptions, output: Output): Promise<void> {
  const header = await readRecoveryFile(file);
  const tokens = readTokens({ tokenFiles: options.tokenFile });
  const remote = withToken(options.remote ?? header.remote, tokens);
  output.start(
    {
      file,
      remote: options.remote ?? header.remote,
      chunks: header.chunks,
      bytes: header.bytes,
      createdAt: header.createdAt,
    },
    `pushing ${header.chunks} chunk(s) (${formatBytes(header.bytes)}) saved ${header.createdAt} to ${options.remote ?? header.remote}`,
  );
  const chunkBytes = header.chunks === 0 ? 0 : header.bytes / header.chunks;
  await recoverFile(file, {
    remote,
    schemes: schemePackages([...(header.schemes ?? []), ...options.scheme]),
    timeoutMs: options.timeout,
    onChunk: (done) =>
      output.progress({
        label: "pushed",
        done: Math.min(header.bytes, done * chunkBytes),
        total: header.bytes,
      }),
  });
  output.done(
    { file, chunks: header.chunks, bytes: header.bytes, removed: true },
    `pushed ${header.chunks} chunk(s) (${formatBytes(header.bytes)}); the remote synced them and ${file} is removed`,
  );
}
