import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { waitFor } from "@r3map/core/testing";

export const run = promisify(execFile);

/** True when every named program is on PATH. */
export function have(...programs: string[]): boolean {
  const path = (process.env.PATH ?? "").split(":").concat(["/usr/bin", "/usr/sbin", "/bin", "/sbin"]);
  return programs.every((program) => path.some((dir) => existsSync(join(dir, program))));
}

export function scratchDir(prefix = "r3map-nbd-"): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export function connectable(where: { port: number } | { path: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = "path" in where ? net.connect(where.path) : net.connect(where.port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** A child server process that is killed (and awaited) on stop. */
export interface Child {
  process: ChildProcess;
  stop(): Promise<void>;
}

export function startChild(command: string, args: string[]): Child {
  const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.on("exit", (code) => {
    if (code && code !== 0 && stderr) (child as ChildProcess & { stderrText?: string }).stderrText = stderr;
  });
  return {
    process: child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
        setTimeout(() => child.kill("SIGKILL"), 3_000).unref();
      }),
  };
}

/** `nbdkit memory` in the foreground on a UNIX socket (or a TCP port); resolves once it accepts. */
export async function startNbdkit(
  size: number | string,
  options: { socket?: string; port?: number; tlsDir?: string; extra?: string[]; plugin?: string[] } = {},
): Promise<Child> {
  const args = ["-f", "--exit-with-parent"];
  if (options.socket) args.push("-U", options.socket);
  else args.push("-i", "127.0.0.1", "-p", String(options.port));
  if (options.tlsDir) args.push("--tls=require", `--tls-certificates=${options.tlsDir}`);
  args.push(...(options.extra ?? []));
  args.push(...(options.plugin ?? ["memory", `size=${size}`]));
  const child = startChild("nbdkit", args);
  const where = options.socket ? { path: options.socket } : { port: options.port! };
  await waitFor(
    async () => {
      if (child.process.exitCode !== null)
        throw new Error(`nbdkit exited: ${(child.process as { stderrText?: string }).stderrText ?? ""}`);
      return (!options.socket || existsSync(options.socket)) && connectable(where);
    },
    { message: "nbdkit to accept connections", intervalMs: 20 },
  );
  return child;
}

/** A CA and a server certificate for 127.0.0.1/localhost, named as nbdkit and qemu expect. */
export async function makeCertificates(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const ssl = (...args: string[]) => run("openssl", args, { cwd: dir });
  await ssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=r3map test CA",
    "-keyout",
    "ca-key.pem",
    "-out",
    "ca-cert.pem",
  );
  await ssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=localhost",
    "-keyout",
    "server-key.pem",
    "-out",
    "server.csr",
  );
  writeFileSync(
    join(dir, "ext.cnf"),
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
  );
  await ssl(
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca-cert.pem",
    "-CAkey",
    "ca-key.pem",
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
    "-out",
    "server-cert.pem",
  );
  return {
    ca: join(dir, "ca-cert.pem"),
    cert: join(dir, "server-cert.pem"),
    key: join(dir, "server-key.pem"),
  };
}

/** Random bytes in a file of `size` bytes. */
export async function randomFile(path: string, sizeMiB: number): Promise<void> {
  await run("dd", ["if=/dev/urandom", `of=${path}`, "bs=1M", `count=${sizeMiB}`, "status=none"]);
}
