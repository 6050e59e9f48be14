// Managed file mounts over S3 (Ceph radosgw): the shared store-mount checks (fio
// verify and a byte-for-byte bucket check; the gateway stopped mid-run).

import { describeStoreMount } from "@r3map/mount/testing";
import { inject } from "vitest";
import { serverAction } from "../../../scripts/servers/harness.js";
import "../src/index.js"; // registers s3: for the direct checks in this thread
import { s3Uri } from "./helpers.js";

describeStoreMount({
  store: "S3",
  schemes: ["@r3map/backend-s3"],
  uri: (params) => s3Uri(params),
  outageParams: { timeoutMs: 2000, maxAttempts: 2 },
  stop: () => serverAction("radosgw", "gateway-stop", inject("s3").state),
  start: () => serverAction("radosgw", "gateway-start", inject("s3").state),
  keepsData: true,
  readFailsWithinMs: 15_000,
  backWithinMs: 30_000,
});
