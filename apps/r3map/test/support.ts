import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
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
  const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(
    "req",
    "-x509",
    ...key,
    "-days",
    "2",
    "-subj",
    "/CN=r3map test CA",
    "-keyout",
    "ca-key.pem",
    "-out",
    "ca-cert.pem",
  );
  const usages = {
    server: "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    client: "extendedKeyUsage=clientAuth\n",
  };
  for (const [who, extensions] of Object.entries(usages)) {
    openssl("req", ...key, "-subj", `/CN=${who}`, "-keyout", `${who}-key.pem`, "-out", `${who}.csr`);
    writeFileSync(join(dir, `${who}.ext`), extensions);
    openssl(
      "x509",
      "-req",
      "-in",
      `${who}.csr`,
      "-CA",
      "ca-cert.pem",
      "-CAkey",
      "ca-key.pem",
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      `${who}.ext`,
      "-out",
      `${who}-cert.pem`,
    );
  }
}
