/**
 * @r3map/sync: delta sync. Two copies of a resource compare per-chunk digests
 * computed where each copy is (native threads here, the server for a remote
 * served by r3map), and only the chunks that differ move: push, pull, a
 * cryptographic check, and continuous replication of a live file or memory
 * region. See the README.
 */
export {
  type CompareCost,
  type CompareOptions,
  compareRange,
  comparisonLevels,
  DEFAULT_CHUNK_SIZE,
  defaultCoarseChunkSize,
} from "./compare.js";
export {
  checkCopies,
  type DeltaSyncOptions,
  SyncCheckError,
  type SyncProgress,
  type SyncReport,
  syncDelta,
} from "./delta-sync.js";
export {
  localSide,
  memorySide,
  type OpenLocalOptions,
  openLocalPath,
  remoteSide,
  type SyncSide,
} from "./resource.js";
export { copyPlan, type TransferOptions } from "./transfer.js";
export {
  type ChangeSource,
  digestChanges,
  dirtyPageChanges,
  type ReplicateOptions,
  type ReplicationRound,
  replicate,
  trackedChanges,
} from "./watch.js";
