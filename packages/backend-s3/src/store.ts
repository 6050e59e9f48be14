import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { KeyedChunkStore, Limiter, R3mapError } from "@r3map/core";
import { isNotFound, s3Error } from "./errors.js";

export interface S3ChunkStoreOptions {
  /** Resource size in bytes (S3 does not record it). */
  size: number;
  /** Bytes per chunk, i.e. per object. */
  chunkSize: number;
  bucket: string;
  /** Object key prefix: chunk `i` is `<prefix>-<i × chunkSize>`, or `<i × chunkSize>` when empty. */
  prefix?: string;
  readOnly?: boolean;
  /** Requests in flight at most (default 32); match the HTTP agent's maxSockets. */
  concurrency?: number;
}

/**
 * Chunks as S3 objects, one per chunk, named `<prefix>-<byte offset>` as the
 * original r3map names them. A missing object (NoSuchKey / 404) reads as zeros.
 *
 * Both a ChunkStore (`get`/`put`/`delete` of blobs by chunk index, for core's
 * `TransformStore`) and a whole-chunk Backend; `createS3Backend` takes any
 * offset and length. Requests run with bounded concurrency over the client's
 * keep-alive connections.
 */
export class S3ChunkStore extends KeyedChunkStore {
  readonly bucket: string;
  readonly prefix: string;
  readonly #client: S3Client;
  readonly #ownsClient: boolean;
  readonly #limiter: Limiter;

  constructor(client: S3Client, options: S3ChunkStoreOptions, ownsClient = true) {
    super(options.size, options.chunkSize, options.readOnly);
    this.bucket = options.bucket;
    this.prefix = options.prefix ?? "";
    this.#client = client;
    this.#ownsClient = ownsClient;
    const concurrency = options.concurrency ?? 32;
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `concurrency must be a positive integer, got ${concurrency}`,
      );
    }
    this.#limiter = new Limiter(concurrency);
  }

  get client(): S3Client {
    return this.#client;
  }

  keyOf(chunk: number): string {
    const offset = this.layout.offsetOf(chunk);
    return this.prefix === "" ? String(offset) : `${this.prefix}-${offset}`;
  }

  /** Creates the bucket unless it exists (the `create=1` URI parameter). */
  async ensureBucket(region: string | undefined): Promise<void> {
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return;
    } catch (error) {
      if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode !== 404) {
        throw s3Error(error, `HEAD bucket ${this.bucket}`, false);
      }
    }
    try {
      await this.#client.send(
        new CreateBucketCommand({
          Bucket: this.bucket,
          ...(region && region !== "us-east-1"
            ? { CreateBucketConfiguration: { LocationConstraint: region as never } }
            : {}),
        }),
      );
    } catch (error) {
      const name = (error as { name?: string }).name;
      if (name !== "BucketAlreadyOwnedByYou" && name !== "BucketAlreadyExists") {
        throw s3Error(error, `create bucket ${this.bucket}`, false);
      }
    }
  }

  async get(chunk: number): Promise<Uint8Array | undefined> {
    this.assertOpen();
    const key = this.keyOf(chunk);
    return this.#limiter.run(async () => {
      try {
        const reply = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
        return reply.Body ? await reply.Body.transformToByteArray() : new Uint8Array(0);
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw s3Error(error, `GET ${this.bucket}/${key}`, this.closed);
      }
    });
  }

  async put(chunk: number, data: Uint8Array): Promise<void> {
    this.assertOpen();
    this.assertWritable();
    const key = this.keyOf(chunk);
    // A private copy: the SDK may retry the upload after the caller reused its buffer.
    const body = Buffer.from(data);
    await this.#limiter.run(async () => {
      try {
        await this.#client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: body.length }),
        );
      } catch (error) {
        throw s3Error(error, `PUT ${this.bucket}/${key}`, this.closed);
      }
    });
  }

  override readonly delete = async (chunk: number): Promise<void> => {
    this.assertOpen();
    this.assertWritable();
    const key = this.keyOf(chunk);
    await this.#limiter.run(async () => {
      try {
        await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
      } catch (error) {
        if (!isNotFound(error)) throw s3Error(error, `DELETE ${this.bucket}/${key}`, this.closed);
      }
    });
  };

  /** A PUT is durable when S3 acknowledges it: nothing to flush. */
  protected flush(): void {}

  protected release(): void {
    if (this.#ownsClient) this.#client.destroy();
  }
}
