import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isR3mapError, MemoryBackend, openBackend } from "@r3map/core";
import { patternBytes, waitFor } from "@r3map/core/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNbd, listNbdExports, NbdClient, NbdServer } from "../src/index.js";
import {
  type Child,
  connectable,
  freePort,
  have,
  makeCertificates,
  randomFile,
  run,
  scratchDir,
  startChild,
  startNbdkit,
} from "./helpers.js";

const MiB = 1024 * 1024;
const scratch = scratchDir();
const children: Child[] = [];
let certs: { ca: string; cert: string; key: string };

beforeAll(async () => {
  if (have("openssl")) certs = await makeCertificates(scratch.path);
});
afterAll(async () => {
  await Promise.all(children.map((child) => child.stop()));
  scratch.remove();
});

/** Writes a pattern at a few places and reads it back through a fresh request. */
async function roundTrip(client: NbdClient): Promise<void> {
  for (const [offset, length, seed] of [
    [0, 4096, 1],
    [12345, 3 * MiB + 17, 2],
    [client.size - 512, 512, 3],
  ] as const) {
    const data = patternBytes(length, seed);
    await client.writeAt(data, offset);
    const back = new Uint8Array(length);
    await client.readAt(back, offset);
    expect(Buffer.compare(back, data)).toBe(0);
  }
  await client.sync();
}

describe.skipIf(!have("nbdkit"))("our client ↔ nbdkit memory", () => {
  let port: number;
  let socket: string;
  beforeAll(async () => {
    port = await freePort();
    children.push(await startNbdkit("64M", { port }));
    socket = join(scratch.path, "nbdkit.sock");
    children.push(await startNbdkit("16M", { socket }));
  });

  it("reads and writes over TCP with 4 connections (multi-conn)", async () => {
    const client = await connectNbd(`nbd://127.0.0.1:${port}/?connections=4`);
    try {
      expect(client.size).toBe(64 * MiB);
      expect(client.connectionCount).toBe(4);
      expect(client.info.structured).toBe(true);
      await roundTrip(client);
      // 64 MiB in flight at once, spread over the connections and split at the maximum block size.
      const big = patternBytes(64 * MiB, 9);
      await client.writeAt(big, 0);
      const back = new Uint8Array(64 * MiB);
      await client.readAt(back, 0);
      expect(Buffer.compare(back, big)).toBe(0);
    } finally {
      await client.close();
    }
  });

  it("uses trim, write-zeroes and block status when the server offers them", async () => {
    const client = await connectNbd({ port });
    try {
      expect(client.trim && client.writeZeroes && client.blockStatus).toBeTruthy();
      await client.writeAt(new Uint8Array(2 * MiB).fill(1), 0);
      await client.writeZeroes!(0, MiB);
      await client.trim!(MiB, MiB);
      const back = new Uint8Array(2 * MiB);
      await client.readAt(back, 0);
      expect(back.every((b) => b === 0)).toBe(true);
      const extents = await client.blockStatus!(0, 4 * MiB);
      expect(extents[0]!.offset).toBe(0);
      expect(extents.reduce((sum, e) => sum + e.length, 0)).toBe(4 * MiB);
      expect(extents.some((e) => e.zero)).toBe(true);
    } finally {
      await client.close();
    }
  });

  it("reads and writes over a UNIX socket through openBackend (nbd+unix://)", async () => {
    const backend = await openBackend(`nbd+unix:///?socket=${socket}`);
    try {
      expect(backend).toBeInstanceOf(NbdClient);
      await roundTrip(backend as NbdClient);
    } finally {
      await backend.close();
    }
  });

  it("lists exports and reports an unknown one with a typed error", async () => {
    const exports = await listNbdExports({ port });
    expect(exports.length).toBeGreaterThanOrEqual(1);
    const error = await connectNbd({ port, export: "no-such-export", retry: { attempts: 0 } }).catch(
      (e: unknown) => e,
    );
    // nbdkit serves any name by default; if it refused, the error must be typed.
    if (error instanceof Error) expect(isR3mapError(error)).toBe(true);
    else await (error as NbdClient).close();
  });
});

describe.skipIf(!have("nbdkit"))("our client ↔ older nbdkit handshakes", () => {
  it("falls back to EXPORT_NAME without fixed newstyle, and to simple replies without structured replies", async () => {
    const port = await freePort();
    children.push(await startNbdkit("8M", { port, extra: ["--mask-handshake=0", "--no-sr"] }));
    const client = await connectNbd({ port });
    try {
      expect(client.info.structured).toBe(false);
      expect(client.blockStatus).toBeUndefined();
      await roundTrip(client);
    } finally {
      await client.close();
    }
  });
});

describe.skipIf(!have("nbdkit", "openssl"))("our client ↔ nbdkit over TLS", () => {
  let port: number;
  beforeAll(async () => {
    port = await freePort();
    children.push(await startNbdkit("16M", { port, tlsDir: scratch.path }));
  });

  it("negotiates STARTTLS and verifies the server certificate", async () => {
    const client = await connectNbd(`nbds://127.0.0.1:${port}/?tls-certificates=${scratch.path}`);
    try {
      await roundTrip(client);
    } finally {
      await client.close();
    }
  });

  it("explains that TLS is required when connecting in plain text", async () => {
    const error = await connectNbd({ port, retry: { attempts: 0 } }).catch((e: unknown) => e);
    expect(isR3mapError(error, "ERR_PERMISSION")).toBe(true);
    expect(String(error)).toMatch(/requires TLS/);
  });

  it("refuses a server whose certificate is not trusted", async () => {
    const error = await connectNbd({ port, tls: {} }).catch((e: unknown) => e);
    expect(isR3mapError(error, "ERR_PERMISSION")).toBe(true);
  });
});

describe.skipIf(!have("qemu-nbd", "openssl"))("our client ↔ qemu-nbd", () => {
  async function qemuNbd(tls: boolean): Promise<number> {
    const image = join(scratch.path, `qemu-${tls}.raw`);
    await randomFile(image, 8);
    const port = await freePort();
    const args = ["-f", "raw", "-b", "127.0.0.1", "-p", String(port), "-t", "-x", "exp"];
    if (tls) {
      args.push(
        "--object",
        `tls-creds-x509,id=tls0,dir=${scratch.path},endpoint=server,verify-peer=off`,
        "--tls-creds",
        "tls0",
      );
    }
    const child = startChild("qemu-nbd", [...args, image]);
    children.push(child);
    await waitFor(() => connectable({ port }), "qemu-nbd to listen");
    return port;
  }

  it("reads and writes in plain text", async () => {
    const port = await qemuNbd(false);
    const client = await connectNbd(`nbd://127.0.0.1:${port}/exp`);
    try {
      expect(client.size).toBe(8 * MiB);
      await roundTrip(client);
    } finally {
      await client.close();
    }
  });

  it("reads and writes over TLS", async () => {
    const port = await qemuNbd(true);
    const client = await connectNbd({
      port,
      export: "exp",
      tls: { ca: readFileSync(certs.ca), servername: "localhost" },
    });
    try {
      await roundTrip(client);
    } finally {
      await client.close();
    }
  });
});

describe.skipIf(!have("openssl"))("our server with TLS", () => {
  let server: NbdServer;
  let port: number;
  beforeAll(async () => {
    server = new NbdServer({
      exports: [{ name: "secret", backend: new MemoryBackend(4 * MiB) }],
      tls: { cert: readFileSync(certs.cert), key: readFileSync(certs.key) },
      tlsRequired: true,
    });
    port = ((await server.listen({ port: 0 })) as { port: number }).port;
  });
  afterAll(() => server.close());

  it("serves our client over STARTTLS and refuses plain text with a clear error", async () => {
    const client = await connectNbd({ port, export: "secret", tls: { ca: readFileSync(certs.ca) } });
    try {
      await roundTrip(client);
    } finally {
      await client.close();
    }
    const error = await connectNbd({ port, export: "secret", retry: { attempts: 0 } }).catch(
      (e: unknown) => e,
    );
    expect(isR3mapError(error, "ERR_PERMISSION")).toBe(true);
  });

  it.skipIf(!have("nbdinfo"))("serves libnbd (GnuTLS) over STARTTLS", async () => {
    const { stdout } = await run("nbdinfo", [
      "--json",
      `nbds://127.0.0.1:${port}/secret?tls-certificates=${scratch.path}`,
    ]);
    const info = JSON.parse(stdout) as { protocol: string; exports: Array<{ "export-size": number }> };
    expect(info.exports[0]!["export-size"]).toBe(4 * MiB);
  });
});
