import { type ChunkOrigin, type ErrorCode, type Progress, R3mapError } from "@r3map/core";
import type { MountDescription } from "../description.js";
import type { DeviceOptions, Frontend, MountHandle } from "../device.js";

/** Messages between a mount on the main thread and its engine worker. */
export type Request =
  | {
      id: number;
      op: "open";
      frontend: Frontend;
      description: MountDescription;
      options: DeviceOptions;
      /** Forward every chunk-local event (only when someone listens: one message per chunk). */
      chunkEvents: boolean;
    }
  | { id: number; op: "sync" | "close" | "progress" }
  | { id: number; op: "refresh"; chunks: number[] };

export type Reply =
  | { id: number; ok: true; value?: MountHandle | Progress | undefined }
  | { id: number; ok: false; error: SerializedError };

export type Notice =
  | { event: "progress"; progress: Progress }
  | { event: "chunk-local"; chunk: number; origin: ChunkOrigin }
  | { event: "error"; error: SerializedError };

export interface SerializedError {
  code?: string;
  errno?: string;
  message: string;
}

export function serializeError(error: unknown): SerializedError {
  const { code, errno } = (error ?? {}) as { code?: unknown; errno?: unknown };
  return {
    message: error instanceof Error ? error.message : String(error),
    ...(typeof code === "string" ? { code } : {}),
    ...(typeof errno === "string" ? { errno } : {}),
  };
}

export function deserializeError(error: SerializedError): Error {
  if (error.code?.startsWith("ERR_")) {
    return new R3mapError(error.code as ErrorCode, error.message, error.errno ? { errno: error.errno } : {});
  }
  return Object.assign(new Error(error.message), error.code ? { code: error.code } : {});
}
