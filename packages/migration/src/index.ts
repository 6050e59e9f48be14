export { toLocalChunks } from "./chunks.js";
export {
  type Finalized,
  Leecher,
  type LeecherEvents,
  type LeecherHooks,
  type LeecherOptions,
  type LeecherPhase,
} from "./leecher.js";
export { type Leech, Migrator } from "./migrator.js";
export { backendResource, mountResource, type SeededResource } from "./resource.js";
export {
  Seeder,
  type SeederEvents,
  type SeederHooks,
  type SeederOptions,
  type SeederPhase,
} from "./seeder.js";
