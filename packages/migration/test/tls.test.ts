/**
 * A seeder with TLS and client certificates: a leecher that presents one
 * migrates over both planes encrypted, and the NBD data plane — which cannot
 * check a bearer token — refuses whoever skips TLS or has no certificate.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { MemoryBackend, openBackend } from "@r3map/core";
import { testRandom } from "@r3map/core/testing";
import "@r3map/nbd";
import { afterAll, describe, expect, it } from "vitest";
import { createTestCertificates } from "../../transport-connect/test/certificates.js";
import { Leecher, Seeder } from "../src/index.js";
import { testFileScope } from "./helpers.js";

const run = promisify(execFile);
const size = 8 * 1024 * 1024;
const certificates = createTestCertificates();
const { scratch, cleanup } = testFileScope();
afterAll(() => certificates.remove());

describe("a seeder with TLS", () => {
  it("migrates to a leecher with a client certificate; its data plane refuses plaintext and certificate-less clients", async () => {
    const bytes = testRandom().bytes(size);
    const backend = new MemoryBackend(size);
    await backend.writeAt(bytes, 0);
    const seeder = cleanup.add(
      await Seeder.start(backend, {
        tokens: ["migration-token"],
        tls: { cert: certificates.serverCert, key: certificates.serverKey, ca: certificates.ca },
      }),
      (s) => s.close(),
    );
    expect(seeder.url).toMatch(/^r3map\+https:/);
    const dataPort = seeder.data!.port;

    // libnbd with the CA and the client certificate (under the names it looks for) reads the export…
    const libnbdDir = fs.mkdtempSync(path.join(scratch, "libnbd-"));
    fs.copyFileSync(certificates.paths.ca, path.join(libnbdDir, "ca-cert.pem"));
    fs.copyFileSync(certificates.paths.clientCert, path.join(libnbdDir, "client-cert.pem"));
    fs.copyFileSync(certificates.paths.clientKey, path.join(libnbdDir, "client-key.pem"));
    const secure = await run("nbdinfo", [
      "--size",
      `nbds://127.0.0.1:${dataPort}/seed?tls-certificates=${libnbdDir}`,
    ]);
    expect(Number(secure.stdout.trim())).toBe(size);
    // …and without TLS it gets nothing.
    await expect(
      run("nbdinfo", ["--size", `nbd://127.0.0.1:${dataPort}/seed`]),
      "nbdinfo without TLS",
    ).rejects.toMatchObject({ code: 1 });
    // TLS without a client certificate: the handshake is refused.
    await expect(
      openBackend(`nbds://127.0.0.1:${dataPort}/seed?ca=${certificates.paths.ca}`),
    ).rejects.toBeDefined();

    const { paths } = certificates;
    const uri = `r3map+https://127.0.0.1:${seeder.control.port}?ca=${paths.ca}&cert=${paths.clientCert}&key=${paths.clientKey}&token=migration-token`;
    const leecher = cleanup.add(await Leecher.open(uri, { as: "file" }), (l) => l.close());
    const { downtimeMs, lastRoundMs } = await leecher.finalize();
    // The downtime includes the seeder's last round, seen from here.
    expect(lastRoundMs).toBeGreaterThan(0);
    expect(lastRoundMs).toBeLessThanOrEqual(downtimeMs);
    await leecher.release();
    await seeder.migrated;
    const received = await fs.promises.readFile(leecher.path!);
    expect(Buffer.compare(received, bytes), "the leecher's bytes").toBe(0);
  });
});
