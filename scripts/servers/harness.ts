// Starts and stops the test servers of this folder from Node (vitest globalSetup
// and tests): `const redis = await startServer("redis"); redis.env.REDIS_URL; await redis.stop();`
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * scripts/servers of this checkout, found above wherever this module runs:
 * its own folder, or a bundle that includes it (the bench's dist).
 */
function serversDir(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    const candidate = join(dir, "scripts", "servers");
    if (existsSync(join(candidate, "lib.sh"))) return candidate;
    if (dir === dirname(dir)) throw new Error(`scripts/servers not found above ${start}`);
  }
}

const here = serversDir();

export interface TestServer {
  /** The KEY=VALUE lines the script printed (endpoint, credentials). */
  readonly env: Record<string, string>;
  /** Directory holding the server's data, logs and pid files. */
  readonly state: string;
  /** Stops the processes but keeps the state, so `start()` brings the same endpoint back (outage tests). */
  kill(): Promise<void>;
  /** Starts the server again in the same state directory. */
  start(): Promise<void>;
  /** Runs one of the script's extra actions (e.g. radosgw's `gateway-stop`). */
  action(action: string): Promise<void>;
  /** Stops the server and removes its state directory. Idempotent. */
  stop(): Promise<void>;
}

function run(script: string, action: string, state: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      "bash",
      [join(here, `${script}.sh`), action, state],
      // The scripts leave a watchdog that stops the server if this process dies without teardown.
      {
        timeout: timeoutMs,
        killSignal: "SIGKILL",
        env: { ...process.env, R3MAP_SERVER_OWNER_PID: String(process.pid) },
      },
      (error, stdout, stderr) => {
        if (error)
          reject(new Error(`scripts/servers/${script}.sh ${action} failed: ${error.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

/** Runs an extra action of a server started elsewhere (e.g. by globalSetup), given its state directory. */
export async function serverAction(name: string, action: string, state: string): Promise<void> {
  await run(name, action, state, 120_000);
}

function parseEnv(stdout: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of stdout.split("\n")) {
    const at = line.indexOf("=");
    if (at > 0) env[line.slice(0, at)] = line.slice(at + 1);
  }
  return env;
}

/** Runs `scripts/servers/<name>.sh start` in a fresh temp directory (installing the server if missing). */
export async function startServer(name: string, options: { timeoutMs?: number } = {}): Promise<TestServer> {
  const timeoutMs = options.timeoutMs ?? 15 * 60_000; // a first run may install packages
  const state = mkdtempSync(join(tmpdir(), `r3map-${name}-`));
  const env: Record<string, string> = {};
  let stopped = false;
  const server: TestServer = {
    env,
    state,
    kill: async () => {
      await run(name, "stop", state, 60_000);
    },
    action: async (action) => {
      await run(name, action, state, 120_000);
    },
    start: async () => {
      Object.assign(env, parseEnv(await run(name, "start", state, timeoutMs)));
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      try {
        await run(name, "stop", state, 60_000);
      } finally {
        rmSync(state, { recursive: true, force: true });
      }
    },
  };
  try {
    await server.start();
  } catch (error) {
    await server.stop().catch(() => {});
    throw error;
  }
  return server;
}
