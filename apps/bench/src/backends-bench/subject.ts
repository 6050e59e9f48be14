import { randomBytes } from "node:crypto";
import { openBackend } from "@r3map/core";

/** The original r3map's figures (thesis.md §4.13, §6 items 9–11), in MB/s and µs. */
export interface Original {
  managedMBs: number;
  directMBs: number;
  latencyUs: number;
  label: string;
}

/** A remote with known content, and the store's own client reading one chunk of it. */
export interface Prepared {
  uri: string;
  source: Buffer;
  readChunk(chunk: number, into: Uint8Array): void | Promise<void>;
  close(): Promise<void>;
}

/** One store of the benchmark: how to fill it and read it with its own client. */
export interface Subject {
  name: string;
  /** The raw client's read, for the baseline's label. */
  raw: string;
  /** Packages the mount's engine imports for the URI scheme (resolved here, so any cwd works). */
  schemes: string[];
  /** Raw-client reads in flight for the throughput baseline (the pull's workers for network stores). */
  concurrency: number;
  original: Original;
  prepare(size: number, chunkSize: number): Promise<Prepared>;
}

/** The KEY=VALUE lines a server script printed (endpoint, credentials). */
export type ServerEnv = Record<string, string>;

/** Raw-client reads in flight for the network stores: as many as the mount's pull workers. */
export const PULL_WORKERS = 8;

export function withParams(base: string, params: Record<string, string | number>): string {
  const url = new URL(base);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, String(value));
  return url.toString();
}

/**
 * Fills the store the URI names with `size` random bytes through its backend
 * (its scheme package must be imported) and returns them.
 */
export async function seed(uri: string, size: number): Promise<Buffer> {
  const source = randomBytes(size);
  const backend = await openBackend(uri);
  try {
    await backend.writeAt(source, 0);
    await backend.sync();
  } finally {
    await backend.close();
  }
  return source;
}

/** Copies what a raw client returned for one chunk, refusing a chunk of the wrong size. */
export function copyInto(into: Uint8Array, bytes: Uint8Array | null | undefined): void {
  if (!bytes || bytes.length !== into.length)
    throw new Error("the raw client returned a chunk of the wrong size");
  into.set(bytes);
}
