export type { Backend, Extent } from "./backend.js";
export { memoryView, StorageBackend } from "./backend.js";
export { DirectoryBackend, type DirectoryBackendOptions } from "./backends/directory.js";
export { FileBackend, type FileBackendOptions, sizeOfOpenFile } from "./backends/file.js";
export {
  type ExternalMemoryOptions,
  MEMORY_SEGMENT_SIZE,
  MemoryBackend,
  type MemoryBackendOptions,
} from "./backends/memory.js";
export { ChunkBitmap } from "./chunk-bitmap.js";
export { ChunkLayout, checkRange } from "./chunk-layout.js";
export {
  type ErrorCode,
  errnoOf,
  fromSystemError,
  isR3mapError,
  R3mapError,
  type R3mapErrorOptions,
} from "./errors.js";
export { type Progress, TypedEmitter } from "./events.js";
export {
  ManagedPipeline,
  type ManagedPipelineEvents,
  type ManagedPipelineOptions,
  type PullOptions,
  type PushOptions,
} from "./managed-pipeline.js";
export { ArbitraryStage, settleAll } from "./stages/arbitrary.js";
export { ChunkedStage } from "./stages/chunked.js";
export { LockableStage } from "./stages/lockable.js";
export {
  type ChunkSource,
  DEFAULT_RETRY,
  Puller,
  type PullerOptions,
  type PullPriority,
  type RetryPolicy,
} from "./stages/puller.js";
export { Pusher, type PusherOptions } from "./stages/pusher.js";
export { Stage } from "./stages/stage.js";
export { type ChunkOrigin, SyncedStage, type SyncedStageOptions } from "./stages/synced.js";
export { TrackingStage } from "./stages/tracking.js";
export {
  type ChunkCipher,
  type ChunkCompression,
  type ChunkStore,
  ChunkStoreBackend,
  type ChunkStoreBackendOptions,
  fillChunk,
  KeyedChunkStore,
  openChunkStoreBackend,
  type TransformOptions,
  TransformStore,
} from "./stages/transform.js";
export { formatBytes, parseSize } from "./units.js";
export {
  type BackendOpener,
  fileParam,
  flagParam,
  integerParam,
  openBackend,
  registerBackendScheme,
  registeredBackendSchemes,
  sizeParam,
} from "./uri.js";
export { type Deferred, deferred, delay } from "./util/abort.js";
export { KeyedMutex } from "./util/keyed-mutex.js";
export { Limiter } from "./util/limiter.js";
export { lookupWithoutThreadpool } from "./util/lookup.js";
export { ChunkPriorityQueue } from "./util/priority-queue.js";
