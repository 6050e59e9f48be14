import { registerBackendScheme } from "@r3map/core";
import { openCassandraBackend } from "./open.js";

export { cassandraError } from "./errors.js";
export { createCassandraBackend, openCassandraBackend, openCassandraStore } from "./open.js";
export { CassandraChunkStore, type CassandraChunkStoreOptions, quoteIdentifier } from "./store.js";

registerBackendScheme("cassandra", openCassandraBackend, { network: true });
registerBackendScheme("cassandras", openCassandraBackend, { network: true });
