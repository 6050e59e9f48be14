import type { TestProject } from "vitest/node";
import { startServer } from "../../../scripts/servers/harness.js";

declare module "vitest" {
  export interface ProvidedContext {
    cassandra: {
      host: string;
      port: string;
      user: string;
      password: string;
      dc: string;
      ca: string;
      state: string;
    };
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startServer("cassandra");
  project.provide("cassandra", {
    host: server.env.CASSANDRA_HOST!,
    port: server.env.CASSANDRA_PORT!,
    user: server.env.CASSANDRA_USER!,
    password: server.env.CASSANDRA_PASSWORD!,
    dc: server.env.CASSANDRA_DC!,
    ca: server.env.CASSANDRA_CA!,
    state: server.state,
  });
  return () => server.stop();
}
