import { randomUUID } from "node:crypto";
import { describeBackendConformance } from "@r3map/core/testing";
import { createS3Backend, openS3Store } from "../src/index.js";
import { s3Uri } from "./helpers.js";

const CHUNK = 64 * 1024;
const bucket = `r3map-conf-${randomUUID().slice(0, 8)}`;
let prefix = "";

const open = async (size: number, fresh: boolean, wholeChunks = false) => {
  if (fresh) prefix = `p${randomUUID()}`;
  return createS3Backend(await openS3Store(s3Uri({ size, chunk: CHUNK }, bucket, prefix)), { wholeChunks });
};

describeBackendConformance("s3 (radosgw), any range", (size) => open(size, true), {
  reopen: (size) => open(size, false),
  timeoutMs: 60_000,
});
describeBackendConformance("s3 (radosgw), whole chunks", (size) => open(size, true, true), {
  wholeChunks: CHUNK,
  timeoutMs: 60_000,
});
