import { randomUUID } from "node:crypto";
import { openCassandraStore, quoteIdentifier } from "@r3map/backend-cassandra";
import { copyInto, PULL_WORKERS, type ServerEnv, type Subject, seed, withParams } from "./subject.js";

export function cassandraSubject(env: ServerEnv): Subject {
  return {
    name: "cassandra",
    raw: "Cassandra SELECT",
    schemes: [import.meta.resolve("@r3map/backend-cassandra")],
    concurrency: PULL_WORKERS,
    original: { managedMBs: 698, directMBs: 3, latencyUs: 1125, label: "ScyllaDB" },
    async prepare(size, chunkSize) {
      const keyspace = "r3map_bench";
      const table = "chunks";
      const uri = withParams(
        `cassandra://${env.CASSANDRA_USER}:${env.CASSANDRA_PASSWORD}@${env.CASSANDRA_HOST}:${env.CASSANDRA_PORT}/${keyspace}/${table}`,
        { localDataCenter: env.CASSANDRA_DC!, create: 1, size, chunk: chunkSize, prefix: randomUUID() },
      );
      const source = await seed(uri, size);
      const store = await openCassandraStore(uri);
      const select = `SELECT data FROM ${quoteIdentifier(keyspace)}.${quoteIdentifier(table)} WHERE key = ? LIMIT 1`;
      return {
        uri,
        source,
        readChunk: async (chunk, into) => {
          const reply = await store.client.execute(select, [Buffer.from(store.keyOf(chunk))], {
            prepare: true,
          });
          copyInto(into, reply.first()?.get("data") as Buffer | undefined);
        },
        close: () => store.close(),
      };
    },
  };
}
