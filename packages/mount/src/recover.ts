import * as fs from "node:fs";
import {
  applyRecoveryFile,
  type Backend,
  type FilterDescription,
  R3mapError,
  type RecoveryHeader,
  readRecoveryFile,
} from "@r3map/core";
import { openRemote } from "./engine.js";
import { importSchemePackages } from "./schemes.js";

export interface RecoverOptions {
  /**
   * The remote to push to: a URI (default: the one the file names) or a
   * Backend already opened — with the mount's filters stacked on it.
   */
  remote?: string | Backend;
  /** Packages registering the remote's scheme (default: those the file names). */
  schemes?: string[];
  /** The filters the mount had, with their options (the file names them but keeps no options). */
  filters?: FilterDescription[];
  /** Request deadline for a remote opened by URI (default 15 000 ms). */
  timeoutMs?: number;
  /** After each chunk written. */
  onChunk?: (done: number, total: number) => void;
}

/**
 * Pushes a recovery file — the changes a mount saved when it could not push
 * them at close — to the remote, syncs the remote, and only then removes the
 * file. The file is checked whole first: from a damaged one nothing is
 * pushed (`ERR_INTEGRITY`) and it is kept. Run it before anyone else writes
 * the remote: its chunks replace what the remote holds.
 *
 * ```ts
 * const { chunks, bytes } = await recover("/var/lib/app/unpushed.r3rec");
 * ```
 */
export async function recover(file: string, options: RecoverOptions = {}): Promise<RecoveryHeader> {
  const header = await readRecoveryFile(file);
  const named = header.filters ?? [];
  const filters = options.filters ?? [];
  const given = typeof options.remote === "object" ? options.remote : undefined;
  if (!given && named.join() !== filters.map((filter) => filter.name).join()) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `${file} was saved from a mount with the filters [${named.join(", ")}]: pass the same filters (with their options), or a remote with them stacked on it`,
    );
  }
  const uri = typeof options.remote === "string" ? options.remote : header.remote;
  if (!given && uri === "") {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `${file} does not name its remote (the mount's remote was a Backend object): pass the remote`,
    );
  }
  let remote = given;
  if (!remote) {
    await importSchemePackages(options.schemes ?? header.schemes);
    remote = await openRemote({
      remote: uri,
      ...(filters.length > 0 ? { filters } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    });
  }
  try {
    await applyRecoveryFile(file, remote, options.onChunk);
  } finally {
    if (!given) await remote.close();
  }
  // The remote synced the chunks: the file has done its job.
  await fs.promises.rm(file);
  return header;
}
