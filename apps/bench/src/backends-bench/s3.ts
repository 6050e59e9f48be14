import { randomUUID } from "node:crypto";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { openS3Store } from "@r3map/backend-s3";
import { copyInto, PULL_WORKERS, type ServerEnv, type Subject, seed, withParams } from "./subject.js";

export function s3Subject(env: ServerEnv): Subject {
  return {
    name: "s3",
    raw: "S3 GetObject",
    schemes: [import.meta.resolve("@r3map/backend-s3")],
    concurrency: PULL_WORKERS,
    original: { managedMBs: 44, directMBs: 8, latencyUs: 745, label: "S3/Minio" },
    async prepare(size, chunkSize) {
      const credentials = `${encodeURIComponent(env.S3_ACCESS_KEY!)}:${encodeURIComponent(env.S3_SECRET_KEY!)}`;
      const bucket = `bench-${randomUUID().slice(0, 8)}`;
      const uri = withParams(`s3://${credentials}@${bucket}/disk`, {
        endpoint: env.S3_ENDPOINT!,
        region: env.S3_REGION!,
        create: 1,
        size,
        chunk: chunkSize,
      });
      const source = await seed(uri, size);
      const store = await openS3Store(uri);
      return {
        uri,
        source,
        readChunk: async (chunk, into) => {
          const reply = await store.client.send(
            new GetObjectCommand({ Bucket: bucket, Key: store.keyOf(chunk) }),
          );
          copyInto(into, await reply.Body?.transformToByteArray());
        },
        close: () => store.close(),
      };
    },
  };
}
