import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "@r3map/cli-kit/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli, firstLine, makeCertificates, r3map, scratch, stopAll } from "./support.js";

const work = scratch("r3map-cli-tls-");
const image = join(work.dir, "disk.img");
const data = randomBytes(8 * 1024 * 1024);
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** nbdcopy of a whole export to stdout. */
function copy(uri: string): Promise<{ status: number | null; bytes: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let stderr = "";
    const child = spawn("nbdcopy", [uri, "-"], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.on("data", (d: Buffer) => chunks.push(d));
    child.stderr.on("data", (d: Buffer) => {
      stderr += d;
    });
    child.once("close", (status) => resolve({ status, bytes: Buffer.concat(chunks), stderr }));
  });
}

/** `r3map serve` of the image with the test certificates (named as nbdkit names them); resolves with its URI. */
async function serveImage(...options: string[]): Promise<{ uri: string; server: ReturnType<typeof r3map> }> {
  const server = r3map(
    [
      "serve",
      `file://${image}`,
      "--tls-cert",
      "server-cert.pem",
      "--tls-key",
      "server-key.pem",
      "--print-uri",
      ...options,
    ],
    { cwd: work.dir },
  );
  return { uri: await firstLine(server), server };
}

beforeAll(() => {
  makeCertificates(work.dir);
  writeFileSync(image, data);
});

afterAll(async () => {
  await stopAll();
  work.remove();
});

describe("serve --tls", () => {
  it("serves NBD with --tls=require: nbdcopy reads it over TLS (nbds://), a plain client is refused", async () => {
    const { uri, server } = await serveImage("--nbd", "127.0.0.1:0", "--tls=require");
    expect(uri).toMatch(/^nbds:\/\/127\.0\.0\.1:\d+\/default$/);
    const secure = await copy(`${uri}?tls-certificates=${work.dir}`);
    expect(secure.status, secure.stderr).toBe(0);
    expect(sha256(secure.bytes)).toBe(sha256(data));

    const plain = await copy(uri.replace(/^nbds:/, "nbd:"));
    expect(plain.status).not.toBe(0);
    expect(plain.bytes.length).toBe(0);
    const info = await run("nbdinfo", [uri.replace(/^nbds:/, "nbd:")]);
    expect(info.status).not.toBe(0);
    expect((await server.stop()).status).toBe(0);
  });

  it("with --tls-ca, reads need a client certificate signed by that CA", async () => {
    const { uri, server } = await serveImage("--nbd", "127.0.0.1:0", "--tls-ca", "ca-cert.pem");
    // tls-certificates=DIR sends client-cert.pem/client-key.pem when the directory has them.
    const withCert = await copy(`${uri}?tls-certificates=${work.dir}`);
    expect(withCert.status, withCert.stderr).toBe(0);
    expect(sha256(withCert.bytes)).toBe(sha256(data));
    const onlyCa = scratch("r3map-cli-ca-");
    try {
      copyFileSync(join(work.dir, "ca-cert.pem"), join(onlyCa.dir, "ca-cert.pem"));
      const without = await copy(`${uri}?tls-certificates=${onlyCa.dir}`);
      expect(without.status).not.toBe(0);
    } finally {
      onlyCa.remove();
    }
    expect((await server.stop()).status).toBe(0);
  });

  it("serves Connect over TLS with client certificates; r3map info reaches it with them", async () => {
    const { uri, server } = await serveImage(
      "--connect",
      "127.0.0.1:0",
      "--tls-ca",
      "ca-cert.pem",
      "--read-only",
    );
    expect(uri).toMatch(/^r3map\+https:\/\/127\.0\.0\.1:\d+$/);
    const files = (names: string) =>
      names
        .split(",")
        .map((n) => `${n}=${join(work.dir, n === "ca" ? "ca-cert.pem" : `client-${n}.pem`)}`)
        .join("&");
    const info = await run(process.execPath, [cli, "info", `${uri}?${files("ca,cert,key")}`, "--json"]);
    expect(info.status, info.stderr).toBe(0);
    expect(JSON.parse(info.stdout)).toMatchObject({
      event: "done",
      size: data.length,
      readOnly: true,
      transport: "r3map+https",
    });
    const refused = await run(process.execPath, [cli, "info", `${uri}?${files("ca")}`]);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect((await server.stop()).status).toBe(0);
  });
});
