import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCertificates {
  dir: string;
  /** PEM bytes. */
  ca: Buffer;
  serverCert: Buffer;
  serverKey: Buffer;
  clientCert: Buffer;
  clientKey: Buffer;
  /** A client certificate signed by a CA the server does not trust. */
  rogueCert: Buffer;
  rogueKey: Buffer;
  /** Paths of the files above, for URIs. */
  paths: Record<"ca" | "clientCert" | "clientKey", string>;
  remove(): void;
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
}

function issue(dir: string, name: string, ca: string, subject: string, extensions: string): void {
  openssl(
    dir,
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-subj",
    subject,
    "-out",
    `${name}.csr`,
  );
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(
    dir,
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${ca}.crt`,
    "-CAkey",
    `${ca}.key`,
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    `${name}.ext`,
    "-out",
    `${name}.crt`,
  );
}

function authority(dir: string, name: string): void {
  openssl(
    dir,
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-subj",
    `/CN=${name}`,
    "-days",
    "2",
    "-out",
    `${name}.crt`,
  );
}

/** A CA, a server certificate for 127.0.0.1/localhost, a client certificate and a rogue one, in a temp dir. */
export function createTestCertificates(): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), "r3map-connect-tls-"));
  try {
    authority(dir, "ca");
    authority(dir, "rogue-ca");
    issue(
      dir,
      "server",
      "ca",
      "/CN=localhost",
      "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    issue(dir, "client", "ca", "/CN=r3map-client", "extendedKeyUsage=clientAuth\n");
    issue(dir, "rogue", "rogue-ca", "/CN=r3map-rogue", "extendedKeyUsage=clientAuth\n");
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const read = (file: string) => readFileSync(join(dir, file));
  return {
    dir,
    ca: read("ca.crt"),
    serverCert: read("server.crt"),
    serverKey: read("server.key"),
    clientCert: read("client.crt"),
    clientKey: read("client.key"),
    rogueCert: read("rogue.crt"),
    rogueKey: read("rogue.key"),
    paths: {
      ca: join(dir, "ca.crt"),
      clientCert: join(dir, "client.crt"),
      clientKey: join(dir, "client.key"),
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
