import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Running } from "@r3map/cli-kit/testing";

export const cli = join(import.meta.dirname, "..", "dist", "cli.js");

/** Every r3map process a test started; `stopAll` ends those still running. */
const started = new Set<Running>();

/** Starts `r3map ARGS`. */
export function r3map(
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Running {
  const running = new Running(process.execPath, [cli, ...args], options);
  started.add(running);
  void running.exited.then(() => started.delete(running));
  return running;
}

/** SIGTERM to whatever is still running (a mount unmounts itself), SIGKILL after 10 s. */
export async function stopAll(): Promise<void> {
  await Promise.all(
    [...started].map(async (running) => {
      const killer = setTimeout(() => running.child.kill("SIGKILL"), 10_000);
      await running.stop();
      clearTimeout(killer);
    }),
  );
}

/** A temporary directory and its removal. */
export function scratch(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The first line of stdout once there is one (an endpoint printed by --print-uri). */
export async function firstLine(running: Running): Promise<string> {
  await running.until((r) => r.stdout.includes("\n"), "a line on stdout");
  return running.stdout.split("\n")[0]!;
}

/**
 * A CA, a server certificate for 127.0.0.1/localhost and a client certificate,
 * in `dir` under the names nbdkit and libnbd look for (ca-cert.pem,
 * server-cert.pem, server-key.pem, client-cert.pem, client-key.pem).
 */
export function makeCertificates(dir: string): void {
  const openssl = (command: string, ...extra: string[]) =>
    execFileSync("openssl", [...command.split(" "), ...extra], { cwd: dir, stdio: "pipe" });
  const key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2";
  openssl(`req -x509 ${key} -subj /CN=r3map-test-CA -keyout ca-key.pem -out ca-cert.pem`);
  const extensions = {
    server: ["subjectAltName=DNS:localhost,IP:127.0.0.1", "extendedKeyUsage=serverAuth"],
    client: ["extendedKeyUsage=clientAuth"],
  };
  for (const [who, wanted] of Object.entries(extensions)) {
    // `req -x509 -CA` issues a certificate signed by the CA in one step (OpenSSL 3).
    const added = ["basicConstraints=critical,CA:FALSE", ...wanted].flatMap((e) => ["-addext", e]);
    openssl(
      `req -x509 ${key} -subj /CN=${who} -CA ca-cert.pem -CAkey ca-key.pem`,
      ...added,
      "-keyout",
      `${who}-key.pem`,
      "-out",
      `${who}-cert.pem`,
    );
  }
}
