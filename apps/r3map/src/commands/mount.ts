import { formatBytes, parseSize } from "@r3map/core";
import { type MountDescription, mountFile, mountPath } from "@r3map/mount";
import { closeOnSignals } from "../shutdown.js";

export interface MountCommandOptions {
  as: "file" | "path";
  managed?: boolean;
  local?: string;
  chunkSize: string;
  pullWorkers: string;
  pushInterval: string;
  mountPoint?: string;
  scheme?: string[];
  json?: boolean;
}

const say = (text: string) => process.stderr.write(`${text}\n`);

/** Mounts a remote as a file or a block device until a signal arrives, then closes (final push). */
export async function mount(remote: string, options: MountCommandOptions): Promise<void> {
  const description: MountDescription = {
    remote,
    schemes: ["@r3map/nbd", "@r3map/transport-connect", ...(options.scheme ?? [])],
    chunkSize: parseSize(options.chunkSize),
    ...(options.managed
      ? {
          managed: {
            ...(options.local ? { local: options.local } : {}),
            pull: Number(options.pullWorkers) > 0 ? { workers: Number(options.pullWorkers) } : false,
            push: { intervalMs: Number(options.pushInterval) },
          },
        }
      : {}),
  };
  const deviceOptions = options.mountPoint ? { mountPoint: options.mountPoint } : {};
  const mounted =
    options.as === "path"
      ? await mountPath(description, deviceOptions)
      : await mountFile(description, deviceOptions);
  // Before announcing the mount: a signal sent as soon as the announcement is read must close it gracefully.
  closeOnSignals(() => mounted.close(), say);
  if (options.json) process.stdout.write(`${JSON.stringify({ path: mounted.path, size: mounted.size })}\n`);
  say(
    `${remote} mounted ${options.managed ? "managed" : "direct"} as ${options.as}: ${mounted.path} (${formatBytes(mounted.size)})`,
  );
  let last = 0;
  mounted.on("progress", (p) => {
    const now = Date.now();
    if (now - last < 1000 && p.chunksLocal < p.chunksTotal) return;
    last = now;
    say(
      `  ${p.chunksLocal}/${p.chunksTotal} chunks local, ${formatBytes(p.bytesPulled)} pulled, ${formatBytes(p.bytesPushed)} pushed, ${p.dirtyChunks} dirty`,
    );
  });
  mounted.on("error", (error) =>
    say(`  background: ${error instanceof Error ? error.message : String(error)}`),
  );
}
