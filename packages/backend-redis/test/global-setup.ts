import type { TestProject } from "vitest/node";
import { startServer } from "../../../scripts/servers/harness.js";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
    redisClusterUrl: string;
    redisTlsUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [single, cluster] = await Promise.all([startServer("redis"), startServer("redis-cluster")]);
  project.provide("redisUrl", single.env.REDIS_URL!);
  project.provide("redisClusterUrl", cluster.env.REDIS_CLUSTER_URL!);
  project.provide("redisTlsUrl", single.env.REDIS_TLS_URL!);
  return async () => {
    await Promise.allSettled([single.stop(), cluster.stop()]);
  };
}
