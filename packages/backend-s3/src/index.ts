import { registerBackendScheme } from "@r3map/core";
import { openS3Backend } from "./open.js";

export { isNotFound, s3Error } from "./errors.js";
export { createS3Backend, createS3Client, openS3Backend, openS3Store, type S3ClientOptions } from "./open.js";
export { S3ChunkStore, type S3ChunkStoreOptions } from "./store.js";

registerBackendScheme("s3", openS3Backend, { network: true });
