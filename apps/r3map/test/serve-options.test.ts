import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Running, run } from "@r3map/cli-kit/testing";
import { waitFor } from "@r3map/core/testing";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cli, firstLine, r3map, scratch, stopAll } from "./support.js";

const work = scratch("r3map-cli-serve-");

afterEach(stopAll);
afterAll(() => work.remove());

/** A Connect unary call with curl over a UNIX socket (HTTP/2 without TLS, JSON). */
function curlGetInfo(socket: string, token?: string) {
  return run("curl", [
    "-s",
    "-o",
    "-",
    "-w",
    "\n%{http_code}",
    "--unix-socket",
    socket,
    "--http2-prior-knowledge",
    "-H",
    "content-type: application/json",
    ...(token ? ["-H", `authorization: Bearer ${token}`] : []),
    "-d",
    "{}",
    "http://localhost/r3map.v1.BackendService/GetInfo",
  ]);
}

describe("serve's options", () => {
  it("serves Connect on a UNIX socket, taking its token from --token-file; curl is let in only with it", async () => {
    const socket = join(work.dir, "connect.sock");
    const tokens = join(work.dir, "tokens");
    writeFileSync(tokens, "# the service's token\ns3cret\n");
    const server = r3map([
      "serve",
      "memory:?size=4MiB",
      "--connect",
      socket,
      "--token-file",
      tokens,
      "--print-uri",
    ]);
    expect(await firstLine(server)).toBe(`unix:${socket}`);
    const allowed = await curlGetInfo(socket, "s3cret");
    const [body, code] = allowed.stdout.split("\n");
    expect(code, allowed.stderr).toBe("200");
    expect(JSON.parse(body!)).toMatchObject({ size: String(4 * 1024 * 1024) });
    const refused = await curlGetInfo(socket, "wrong");
    expect(refused.stdout.split("\n")[1]).toBe("401");
    expect(server.stderr).not.toContain("warning"); // a token from a file is not visible in ps
    expect((await server.stop()).status).toBe(0);
    expect(existsSync(socket)).toBe(false);
  });

  it("--print-uri prints only the URIs; --pidfile holds the pid while serving; --read-only refuses writes", async () => {
    const pidfile = join(work.dir, "serve.pid");
    const server = r3map([
      "serve",
      "memory:?size=4MiB",
      "--nbd",
      "127.0.0.1:0",
      "--export",
      "ro",
      "--read-only",
      "--pidfile",
      pidfile,
      "--print-uri",
    ]);
    const uri = await firstLine(server);
    expect(server.stdout).toMatch(/^nbd:\/\/127\.0\.0\.1:\d+\/ro\n$/);
    expect(readFileSync(pidfile, "utf8")).toBe(`${server.child.pid}\n`);
    const info = await run(process.execPath, [cli, "info", uri, "--json"]);
    expect(info.status, info.stderr).toBe(0);
    expect(JSON.parse(info.stdout)).toMatchObject({
      event: "done",
      readOnly: true,
      size: 4 * 1024 * 1024,
      transport: "nbd",
      exports: [{ name: "ro", description: "memory:?size=4MiB" }],
    });
    expect(JSON.parse(info.stdout).features).not.toContain("trim");
    const write = await run("nbdcopy", ["--", "[", "nbdkit", "memory", "4M", "]", uri]);
    expect(write.status).not.toBe(0);
    expect(write.stderr).toContain("the destination is read-only");
    expect((await server.stop()).status).toBe(0);
    expect(existsSync(pidfile)).toBe(false);
  });

  it("--exit-with-parent closes when the process that started it exits", async () => {
    const pidfile = join(work.dir, "child.pid");
    // The parent waits for the server to be up, then exits.
    const parent = await run("sh", [
      "-c",
      `${process.execPath} ${cli} serve 'memory:?size=1MiB' --nbd 127.0.0.1:0 --exit-with-parent --pidfile ${pidfile} 2>/dev/null &
       while [ ! -s ${pidfile} ]; do sleep 0.05; done; cat ${pidfile}`,
    ]);
    const pid = Number(parent.stdout.trim());
    expect(pid).toBeGreaterThan(0);
    await waitFor(() => !existsSync(pidfile), {
      timeoutMs: 15_000,
      intervalMs: 50,
      message: "the server to remove its pidfile as it closes",
    });
    const gone = () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    };
    await waitFor(gone, { timeoutMs: 15_000, intervalMs: 50, message: `process ${pid} to exit` });
  });

  it("--insecure listens beyond loopback and says so on stderr (in a network namespace of its own)", async () => {
    const server = new Running("unshare", [
      "--net",
      process.execPath,
      cli,
      "serve",
      "memory:?size=1MiB",
      "--nbd",
      "0.0.0.0:0",
      "--insecure",
      "--print-uri",
    ]);
    try {
      expect(await firstLine(server)).toMatch(/^nbd:\/\/0\.0\.0\.0:\d+\/default$/);
      expect(server.stderr).toMatch(
        /^r3map: warning: serving NBD on 0\.0\.0\.0:\d+ to anyone who can reach it, without authentication \(--insecure\)$/m,
      );
      expect((await server.stop()).status).toBe(0);
    } finally {
      server.child.kill("SIGKILL");
    }
  });

  it("r3map info describes a Connect remote with its token from R3MAP_TOKEN, and any backend URI", async () => {
    const server = r3map(["serve", "memory:?size=2MiB", "--connect", "127.0.0.1:0", "--print-uri"], {
      env: { ...process.env, R3MAP_TOKEN: "t0ken" },
    });
    const uri = await firstLine(server);
    const info = await run(process.execPath, [cli, "info", uri], {
      env: { ...process.env, R3MAP_TOKEN: "t0ken" },
    });
    expect(info.status, info.stderr).toBe(0);
    expect(info.stderr).toMatch(/^transport: +r3map\+h2c$/m);
    expect(info.stderr).toMatch(/^size: +2\.00 MiB \(2097152 bytes\)$/m);
    expect(info.stderr).toMatch(/^chunk size: +1\.00 MiB$/m);
    const denied = await run(process.execPath, [cli, "info", uri], {
      env: { ...process.env, R3MAP_TOKEN: "" },
    });
    expect(denied.status).not.toBe(0);
    expect(denied.stderr.trimEnd().split("\n")).toHaveLength(1);
    const local = await run(process.execPath, [cli, "info", "memory:?size=64KiB", "--json"]);
    expect(JSON.parse(local.stdout)).toMatchObject({ transport: "memory", size: 65536, readOnly: false });
    expect((await server.stop()).status).toBe(0);
  });
});
