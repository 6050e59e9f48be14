import { randomUUID } from "node:crypto";
import { lookup } from "node:dns";
import { Agent as HttpAgent } from "node:http";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { isR3mapError, openBackend, type R3mapError } from "@r3map/core";
import { patternBytes, retryUntil } from "@r3map/core/testing";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { afterEach, describe, expect, inject, it } from "vitest";
import { serverAction } from "../../../scripts/servers/harness.js";
import { createS3Backend, openS3Store, S3ChunkStore } from "../src/index.js";
import { s3Uri } from "./helpers.js";

const CHUNK = 16 * 1024;
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

async function store(
  params: Record<string, string | number> = {},
  bucket?: string,
  prefix?: string,
): Promise<S3ChunkStore> {
  const opened = await openS3Store(s3Uri({ size: 64 * CHUNK, chunk: CHUNK, ...params }, bucket, prefix));
  cleanups.push(() => opened.close());
  return opened;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "expected a rejection").toBeDefined();
  return (error as R3mapError).code;
}

async function bodyOf(client: S3Client, bucket: string, key: string): Promise<Uint8Array> {
  const reply = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return reply.Body!.transformToByteArray();
}

describe("S3ChunkStore on radosgw", () => {
  it("stores one object per chunk named <prefix>-<byte offset> and reads missing objects as zeros", async () => {
    const s = await store({}, undefined, "images/vm1");
    const backend = createS3Backend(s);
    const data = patternBytes(CHUNK + 10, 1);
    await backend.writeAt(data, 3 * CHUNK);
    const listed = await s.client.send(new ListObjectsV2Command({ Bucket: s.bucket }));
    expect(listed.Contents?.map((o) => o.Key).sort()).toEqual(
      [`images/vm1-${3 * CHUNK}`, `images/vm1-${4 * CHUNK}`].sort(),
    );
    expect(
      Buffer.compare(await bodyOf(s.client, s.bucket, `images/vm1-${3 * CHUNK}`), data.subarray(0, CHUNK)),
    ).toBe(0);
    const buffer = new Uint8Array(2 * CHUNK).fill(0x5a);
    await backend.readAt(buffer, 0);
    expect(buffer.every((b) => b === 0)).toBe(true);
  });

  it("refuses an object longer than a chunk with ERR_INTEGRITY", async () => {
    const s = await store();
    await s.client.send(
      new PutObjectCommand({ Bucket: s.bucket, Key: s.keyOf(0), Body: Buffer.alloc(CHUNK + 1) }),
    );
    expect(await codeOf(createS3Backend(s).readAt(new Uint8Array(CHUNK), 0))).toBe("ERR_INTEGRITY");
  });

  it("keeps at most `concurrency` requests in flight", async () => {
    const s = await store({ concurrency: 3 });
    let inFlight = 0;
    let most = 0;
    s.client.middlewareStack.add(
      (next) => async (args) => {
        inFlight++;
        most = Math.max(most, inFlight);
        try {
          return await next(args);
        } finally {
          inFlight--;
        }
      },
      { step: "initialize", name: "countInFlight" },
    );
    const backend = createS3Backend(s);
    await backend.writeAt(patternBytes(24 * CHUNK, 2), 0);
    await backend.readAt(new Uint8Array(24 * CHUNK), 0);
    expect(most).toBe(3);
  });

  it("creates the bucket only when asked, and types missing-bucket and credential errors", async () => {
    const bucket = `r3map-nocreate-${randomUUID().slice(0, 8)}`;
    const withoutCreate = s3Uri({ size: CHUNK, chunk: CHUNK }, bucket).replace("create=1", "create=0");
    const s = await openS3Store(withoutCreate);
    cleanups.push(() => s.close());
    const error = await s.get(0).then(
      () => undefined,
      (e: R3mapError) => e,
    );
    expect(error?.code).toBe("ERR_REMOTE_FAILED");
    expect(error?.message).toMatch(/create=1/);
    const created = await openS3Store(s3Uri({ size: CHUNK, chunk: CHUNK }, bucket));
    cleanups.push(() => created.close());
    await created.put(0, patternBytes(CHUNK, 3));
    expect(await s.get(0)).toEqual(patternBytes(CHUNK, 3));

    const wrong = new URL(s3Uri({ size: CHUNK, chunk: CHUNK }, bucket));
    wrong.password = "not-the-secret";
    expect(await codeOf(openS3Store(wrong))).toBe("ERR_PERMISSION");
    expect(await codeOf(openS3Store(s3Uri({ chunk: CHUNK })))).toBe("ERR_INVALID_ARGUMENT");
    const readOnly = await store({ readOnly: 1 }, bucket);
    expect(await codeOf(createS3Backend(readOnly).writeAt(new Uint8Array(1), 0))).toBe("ERR_READ_ONLY");
  });

  it("opens through the s3: scheme", async () => {
    const backend = await openBackend(s3Uri({ size: 4 * CHUNK, chunk: CHUNK }));
    cleanups.push(() => backend.close());
    await backend.writeAt(patternBytes(100, 4), CHUNK - 50);
    const back = new Uint8Array(100);
    await backend.readAt(back, CHUNK - 50);
    expect(back).toEqual(patternBytes(100, 4));
  });

  it("works with virtual-host addressing (bucket in the host name)", async () => {
    const s3 = inject("s3");
    const bucket = `r3map-vhost-${randomUUID().slice(0, 8)}`;
    await store({}, bucket); // creates the bucket (path style)
    const port = new URL(s3.endpoint).port;
    // <bucket>.localhost must reach the gateway; radosgw runs with `rgw dns name = localhost`.
    const agent = new HttpAgent({
      keepAlive: true,
      lookup: (_host, options, callback) => lookup("127.0.0.1", options, callback as never),
    });
    const hosts: string[] = [];
    const client = new S3Client({
      endpoint: `http://localhost:${port}`,
      region: s3.region,
      forcePathStyle: false,
      credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey },
      requestHandler: new NodeHttpHandler({ httpAgent: agent }),
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
    client.middlewareStack.add(
      (next) => async (args) => {
        hosts.push((args.request as { hostname: string }).hostname);
        return next(args);
      },
      { step: "finalizeRequest", name: "recordHost" },
    );
    const s = new S3ChunkStore(client, { size: 4 * CHUNK, chunkSize: CHUNK, bucket, prefix: "vh" });
    cleanups.push(() => s.close());
    await s.put(1, patternBytes(CHUNK, 6));
    expect(await s.get(1)).toEqual(patternBytes(CHUNK, 6));
    expect(hosts).toContain(`${bucket}.localhost`);
  });
});

describe("S3 gateway outage", () => {
  it("gives typed errors within a bounded time while radosgw is down, and works again once it returns", async () => {
    const state = inject("s3").state;
    const s = await store({ timeoutMs: 2000, maxAttempts: 2 });
    const backend = createS3Backend(s);
    await backend.writeAt(patternBytes(2 * CHUNK, 7), 0);
    await serverAction("radosgw", "gateway-stop", state);
    try {
      for (const call of [
        () => backend.readAt(new Uint8Array(CHUNK), 0),
        () => backend.writeAt(patternBytes(CHUNK, 8), CHUNK),
      ]) {
        const started = Date.now();
        expect(["ERR_REMOTE_UNREACHABLE", "ERR_TIMEOUT"]).toContain(await codeOf(call()));
        expect(Date.now() - started).toBeLessThan(10_000);
      }
    } finally {
      await serverAction("radosgw", "gateway-start", state);
    }
    const after = patternBytes(CHUNK + 3, 9);
    // The server takes a moment to come back: retry typed failures until then.
    await retryUntil(() => backend.writeAt(after, CHUNK - 1), {
      timeoutMs: 30_000,
      intervalMs: 200,
      retryIf: isR3mapError,
    });
    const back = new Uint8Array(3 * CHUNK);
    await backend.readAt(back, 0);
    const expected = patternBytes(3 * CHUNK, 0).fill(0);
    expected.set(patternBytes(2 * CHUNK, 7));
    expected.set(after, CHUNK - 1);
    expect(Buffer.compare(back, expected)).toBe(0);
  });
});
