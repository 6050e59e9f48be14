import { randomUUID } from "node:crypto";
import { inject } from "vitest";

/** An s3: URI on the test radosgw with a fresh bucket (created on demand) or the given one. */
export function s3Uri(
  params: Record<string, string | number> = {},
  bucket = `r3map-${randomUUID().slice(0, 8)}`,
  prefix = "disk",
): string {
  const s3 = inject("s3");
  const url = new URL(
    `s3://${encodeURIComponent(s3.accessKey)}:${encodeURIComponent(s3.secretKey)}@${bucket}/${prefix}`,
  );
  url.searchParams.set("endpoint", s3.endpoint);
  url.searchParams.set("region", s3.region);
  url.searchParams.set("create", "1");
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, String(value));
  return url.toString();
}
