import { inject } from "vitest";

/** A cassandra: URI on the test node (table created on demand). */
export function cassandraUri(
  params: Record<string, string | number> = {},
  table = "chunks",
  scheme = "cassandra",
): string {
  const c = inject("cassandra");
  const url = new URL(`${scheme}://${c.user}:${c.password}@${c.host}:${c.port}/r3map_test/${table}`);
  url.searchParams.set("localDataCenter", c.dc);
  url.searchParams.set("create", "1");
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, String(value));
  return url.toString();
}
