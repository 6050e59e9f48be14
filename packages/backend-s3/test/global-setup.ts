import type { TestProject } from "vitest/node";
import { startServer } from "../../../scripts/servers/harness.js";

declare module "vitest" {
  export interface ProvidedContext {
    s3: { endpoint: string; accessKey: string; secretKey: string; region: string; state: string };
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startServer("radosgw");
  project.provide("s3", {
    endpoint: server.env.S3_ENDPOINT!,
    accessKey: server.env.S3_ACCESS_KEY!,
    secretKey: server.env.S3_SECRET_KEY!,
    region: server.env.S3_REGION!,
    state: server.state,
  });
  return () => server.stop();
}
