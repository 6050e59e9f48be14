import type { Address, Output } from "@r3map/cli-kit";
import { formatBytes, R3mapError } from "@r3map/core";
import { Seeder, type SeederOptions } from "@r3map/migration";
import type { MountCore } from "@r3map/mount";
import { checkExposure, endpointExposures } from "../exposure.js";
import { loadServerTls, type TlsFiles } from "../serve-tls.js";
import { shellHook } from "./shell-hook.js";

/** The options of `migrate seed` and `migrate leech --then-seed` that say how to serve. */
export interface ServingOptions extends Omit<TlsFiles, "tls"> {
  /** The data plane's port (0: a free one). */
  dataPort: number;
  /** false with --no-data-plane: leechers read over Connect, where the token is checked. */
  dataPlane: boolean;
  insecure?: boolean;
  /** Milliseconds a seeder keeps a migration whose leecher's connection dropped after the last round. */
  recovery: number;
  beforeSync?: string;
  afterResume?: string;
}

/** What a seeder will be started with, checked before anything is opened. */
export interface SeedPlan {
  listen: { host: string; port: number };
  options: Omit<SeederOptions, "hooks">;
  beforeSync: string | undefined;
  afterResume: string | undefined;
  /** Protected mode's warnings (--insecure), to print once serving. */
  warnings: string[];
}

/**
 * Checks the serving options: the certificate files, and protected mode —
 * the control plane (Connect) checks a token or a client certificate, the
 * data plane (NBD) only a client certificate, so listening beyond this
 * machine needs `--tls-ca`, or a token with `--no-data-plane`, or `--insecure`.
 */
export function planSeeding(listen: Address, options: ServingOptions, tokens: readonly string[]): SeedPlan {
  if ("path" in listen)
    throw new R3mapError("ERR_INVALID_ARGUMENT", "a seeder listens on host:port, not a socket path");
  const tls = loadServerTls(options);
  const data = options.dataPlane ? { host: listen.host, port: options.dataPort } : undefined;
  const warnings = checkExposure(endpointExposures(data, listen, tls, tokens), options.insecure === true);
  return {
    listen,
    options: {
      host: listen.host,
      port: listen.port,
      data: options.dataPlane ? { port: options.dataPort } : false,
      recoveryMs: options.recovery,
      ...(tokens.length > 0 ? { tokens: [...tokens] } : {}),
      ...(tls ? { tls: { cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca } : {}) } } : {}),
    },
    beforeSync: options.beforeSync,
    afterResume: options.afterResume,
    warnings,
  };
}

/**
 * Seeds `core` as planned: the user's hooks run as shell commands (with
 * R3MAP_PATH and R3MAP_SIZE), each phase is an event, a leecher that goes
 * away is a warning.
 */
export async function startSeeding(core: MountCore, plan: SeedPlan, output: Output): Promise<Seeder> {
  const env = () => ({
    R3MAP_PATH: core.handle.path ?? "",
    R3MAP_SIZE: String(core.handle.size),
  });
  const beforeSync = shellHook("--before-sync", plan.beforeSync, env);
  const afterResume = shellHook("--after-resume", plan.afterResume, env);
  const seeder = await Seeder.start(core, {
    ...plan.options,
    hooks: {
      ...(beforeSync ? { beforeSync } : {}),
      ...(afterResume ? { afterResume } : {}),
    },
  });
  for (const warning of plan.warnings) output.warning(warning);
  seeder.on("phase", (phase) => {
    output.event("phase", { phase });
    output.say(describeSeederPhase(phase));
  });
  seeder.on("leecher-gone", () =>
    output.warning(
      "the leecher went away before taking over: tracking stopped, the application may write again; a new leecher may start",
    ),
  );
  seeder.on("error", (error) =>
    output.warning(error instanceof Error ? error.message : String(error), {
      code: (error as { code?: unknown }).code,
    }),
  );
  return seeder;
}

/** Where a seeder serves and what, for events. */
export function seedingFields(seeder: Seeder, core: MountCore): Record<string, unknown> {
  return {
    url: seeder.url,
    ...(seeder.data ? { dataPort: seeder.data.port } : {}),
    path: core.handle.path,
    size: core.handle.size,
    chunkSize: core.engine.chunkSize,
  };
}

/** The line that tells a person what to run on the other host. */
export function seedingLine(seeder: Seeder, core: MountCore, as: string): string {
  const what = `${core.handle.path} (${formatBytes(core.handle.size)})`;
  const data = seeder.data ? `, data plane on port ${seeder.data.port}` : "";
  return `seeding ${what} at ${seeder.url}${data}; on the other host: r3map migrate leech ${seeder.url} --as ${as}`;
}

function describeSeederPhase(phase: string): string {
  switch (phase) {
    case "tracking":
      return "a leecher started: pre-copy, every write is tracked";
    case "synced":
      return "last round done: writes are refused here; the leecher takes over";
    case "migrated":
      return "migrated: the leecher owns the resource now";
    default:
      return "waiting for a leecher";
  }
}

/**
 * Ends seeding: a leecher past the last round is waited for — until it has
 * every chunk (migrated) or goes away (the seeder resumes) — since until then
 * the resource is whole only here; then the servers and the mount close.
 */
export async function closeSeeding(seeder: Seeder, core: MountCore, output: Output): Promise<void> {
  if (seeder.phase === "synced") {
    output.say("a leecher is taking over: waiting until it has every chunk (or goes away)");
    await new Promise<void>((resolve) => {
      const settled = (phase: string) => {
        if (phase === "synced") return;
        seeder.off("phase", settled);
        resolve();
      };
      seeder.on("phase", settled);
    });
  }
  await seeder.close();
  await core.close();
}
