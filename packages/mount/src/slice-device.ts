import { ChunkBitmap, MEMORY_SEGMENT_SIZE, MemoryBackend, R3mapError } from "@r3map/core";
import { mapFile, touchOnThread, UffdRegion } from "@r3map/native";
import type { Access } from "./access-gate.js";
import { runsOf } from "./chunk-runs.js";
import { chunkSizeOf, type MountDescription } from "./description.js";
import type { Device, DeviceBuilder, MountHandle } from "./device.js";
import type { MountEngine } from "./engine.js";
import { handOff } from "./hand-off.js";

const PAGE_SIZE = 4096;

/**
 * The slice frontend: the resource as memory. A memfd-backed userfaultfd
 * region whose memfd *is* the local cache: the engine's local backend reads and
 * writes the memfd, a touched chunk that is present is mapped natively with
 * UFFDIO_CONTINUE (no copy, no JavaScript), a miss asks the engine to fetch
 * the chunk into the memfd — over NBD, native code does that itself for a
 * chunk the engine is not fetching (`serveMissesFrom`; the two take a
 * chunk's in-flight bit before they write it). Chunks the background pull
 * brings are mapped as they land (one UFFDIO_CONTINUE per run), so touching
 * them takes no fault. Writes to the memory land in the memfd directly;
 * asynchronous write-protect finds them (`scanDirtyChunks`), which every push
 * collects first, and the pusher sends them from the memfd to the remote.
 *
 * The engine reaches the memfd through a shared mapping of its own (a
 * MemoryBackend over it), so a fetch is received from the socket straight
 * into the memfd, with no intermediate buffer and no pwrite.
 *
 * A direct slice is the same with no background pull and pushes only on
 * `sync()` and close: the memory itself is the only copy kept locally.
 */
export class SliceDevice implements Device {
  readonly handle: MountHandle;
  #closed = false;
  #locked = false;
  /** Chunks that became local during this event-loop turn, mapped into the region together at its end. */
  #landed: number[] = [];

  private constructor(
    readonly engine: MountEngine,
    readonly region: UffdRegion,
  ) {
    this.handle = { frontend: "slice", size: engine.size, regionId: region.id };
    // Pulled chunks are mapped as they land, so touching them takes no fault at all.
    if (engine.pulls) {
      engine.on("chunk-local", (chunk) => {
        if (this.#landed.length === 0) setImmediate(() => this.#mapLanded());
        this.#landed.push(chunk);
      });
    }
    // Writes to the memory are seen by nobody: every push, and a migration's tracking, scan for them first.
    engine.addWriteSource(() => (this.#closed ? [] : region.scanDirtyChunks()));
  }

  /** The device over `region`, whose memfd is `engine`'s cache. */
  static attach(engine: MountEngine, region: UffdRegion): SliceDevice {
    return new SliceDevice(engine, region);
  }

  /** The memory, as a Buffer of the resource's size. Never touch it on the thread that runs the engine. */
  get buffer(): Buffer {
    return this.region.buffer.subarray(0, this.handle.size);
  }

  /** A real fault, from a native thread, warms the region's miss path and the engine's alike. */
  async prime(): Promise<void> {
    await this.engine.prime(
      (offset) => touchOnThread(this.region.view(offset, PAGE_SIZE), 0),
      (chunk) => this.region.evict(chunk),
    );
    // Over NBD, misses on chunks the engine is not fetching are fetched by native code from now on.
    const connection = await handOff(this.engine.remote);
    if (connection) this.region.serveMissesFrom(connection);
  }

  /** The memory's writes are collected by every push (a dirty-page scan): nothing is held elsewhere. */
  async flush(): Promise<void> {}

  /** Unmaps the chunks' pages: the next touch faults, and finds them not present. */
  async invalidate(chunks: readonly number[]): Promise<void> {
    for (const chunk of chunks) this.region.evict(chunk);
  }

  /**
   * Locked, every fault goes to the engine (which holds it) and pulled chunks
   * are not mapped; opened again, every present chunk is mapped. Writes to
   * memory cannot be refused: `read-only` changes nothing here (a write
   * still lands, and the next scan finds it).
   */
  async setAccess(access: Access): Promise<void> {
    const locked = access === "locked";
    if (locked === this.#locked) return;
    this.#locked = locked;
    this.region.setGated(locked);
    if (!locked) this.#map(this.engine.presentChunks());
  }

  /** Maps this turn's landed chunks, consecutive ones with one call into the kernel. */
  #mapLanded(): void {
    const chunks = this.#landed;
    this.#landed = [];
    if (!this.#locked) this.#map(chunks);
  }

  #map(chunks: readonly number[]): void {
    if (this.#closed) return;
    for (const [first, count] of runsOf(chunks)) {
      try {
        this.region.mapPresent(first, count);
      } catch (error) {
        // Left to the fault: touching the chunk maps it as before.
        this.engine.reportError(error);
        return;
      }
    }
  }

  /** Unmaps the memory. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.region.close();
  }
}

/**
 * Slices bring the engine's cache: the region's memfd. A direct slice is a
 * managed engine with no pull that pushes only on sync and close.
 */
export function sliceDevice(): DeviceBuilder {
  let region: UffdRegion | undefined;
  return {
    engineDescription(description) {
      const chunkSize = chunkSizeOf(description);
      if (chunkSize % PAGE_SIZE !== 0) {
        throw new R3mapError(
          "ERR_MISALIGNED",
          `a slice's chunk size must be a multiple of ${PAGE_SIZE}, got ${chunkSize}`,
        );
      }
      return { ...description, managed: description.managed ?? { pull: false, push: { intervalMs: null } } };
    },
    cache(size, description: MountDescription, engine) {
      const chunkSize = chunkSizeOf(description);
      const presence = new ChunkBitmap(Math.ceil(size / chunkSize));
      const inFlight = new ChunkBitmap(Math.ceil(size / chunkSize));
      region = UffdRegion.create({
        size: Math.ceil(size / PAGE_SIZE) * PAGE_SIZE,
        chunkSize,
        memory: "memfd",
        cacheInMemfd: true,
        presence,
        inFlight,
        // Also without pushes: a migration tracks the memory's writes the same way.
        dirtyTracking: true,
        onMiss: (chunk) => engine().fetchForReader(chunk),
        onLanded: (chunk) => engine().landedNatively(chunk),
      });
      return { local: mappedCache(region.memfd, size), presence, inFlight };
    },
    attach: async (engine) => SliceDevice.attach(engine, region!),
    abandon: () => region?.close(),
  };
}

/** The memfd, mapped shared into this thread, as the engine's memory cache. */
function mappedCache(memfd: number, size: number): MemoryBackend {
  if (size === 0) return new MemoryBackend(0);
  const mapping = mapFile(memfd, { writable: true, length: Math.ceil(size / PAGE_SIZE) * PAGE_SIZE });
  const segments: Uint8Array[] = [];
  for (let start = 0; start < size; start += MEMORY_SEGMENT_SIZE) {
    segments.push(mapping.view(start, Math.min(MEMORY_SEGMENT_SIZE, size - start)));
  }
  return MemoryBackend.over(segments, { onClose: () => mapping.close() });
}
