export type { Backend, Extent, NbdHandOff, ScatteredPiece } from "./backend.js";
export { memoryView, StorageBackend } from "./backend.js";
export { DirectoryBackend, type DirectoryBackendOptions } from "./backends/directory.js";
export { FileBackend, type FileBackendOptions, sizeOfOpenFile } from "./backends/file.js";
export {
  type ExternalMemoryOptions,
  MEMORY_SEGMENT_SIZE,
  MemoryBackend,
  type MemoryBackendOptions,
} from "./backends/memory.js";
export {
  type ChunkSource,
  Puller,
  type PullerOptions,
  type PullPriority,
} from "./background/puller.js";
export { Pusher, type PusherOptions, type WriteSource } from "./background/pusher.js";
export { DEFAULT_RETRY, type RetryPolicy, withRetry } from "./background/retry.js";
export { ChunkBitmap } from "./chunk-bitmap.js";
export { ChunkLayout, checkRange } from "./chunk-layout.js";
export { ChunkState, type ChunkStateIdentity, type ChunkStateOutcome } from "./chunk-state.js";
export type { ChunkCipher } from "./chunk-store/chunk-cipher.js";
export type { ChunkCompression } from "./chunk-store/chunk-compression.js";
export { type ChunkStore, fillChunk, KeyedChunkStore } from "./chunk-store/chunk-store.js";
export {
  ChunkStoreBackend,
  type ChunkStoreBackendOptions,
  openChunkStoreBackend,
} from "./chunk-store/chunk-store-backend.js";
export { type TransformOptions, TransformStore } from "./chunk-store/transform-store.js";
export {
  type ChunkRange,
  canDigest,
  checkDigestRequest,
  DIGEST_ALGORITHMS,
  type DigestAlgorithm,
  DigestList,
  type DigestRequest,
  type DigestSource,
  diffDigests,
  digestBytes,
  digesterFor,
  registerDigester,
  requestChunks,
  requestSpans,
  TransferPlan,
} from "./digest.js";
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
  applyFilters,
  type FilterDescription,
  type FilterFactory,
  registeredFilters,
  registerFilter,
} from "./filters.js";
export {
  ManagedPipeline,
  type ManagedPipelineEvents,
  type ManagedPipelineOptions,
  type PullOptions,
  type PushOptions,
} from "./managed-pipeline.js";
export {
  applyRecoveryFile,
  type RecoveryHeader,
  type RecoverySource,
  readRecoveryFile,
  writeRecoveryFile,
} from "./recovery-file.js";
export { ArbitraryStage, settleAll } from "./stages/arbitrary.js";
export { ChunkedStage } from "./stages/chunked.js";
export { LockableStage } from "./stages/lockable.js";
export { Stage } from "./stages/stage.js";
export { type ChunkOrigin, SyncedStage, type SyncedStageOptions } from "./stages/synced.js";
export { TrackingStage } from "./stages/tracking.js";
export { formatBytes, parseSize } from "./units.js";
export {
  type BackendOpener,
  fileParam,
  flagParam,
  integerParam,
  type OpenOptions,
  openBackend,
  registerBackendScheme,
  registeredBackendSchemes,
  type SchemeTraits,
  schemeTraits,
  sizeParam,
} from "./uri.js";
export { type Deferred, deferred, delay } from "./util/abort.js";
export { KeyedMutex } from "./util/keyed-mutex.js";
export { Limiter } from "./util/limiter.js";
export { lookupWithoutThreadpool } from "./util/lookup.js";
export { ChunkPriorityQueue } from "./util/priority-queue.js";
export { Turnstile } from "./util/turnstile.js";
export { isAllZero } from "./util/zero.js";
