import { type Backend, ChunkBitmap, MEMORY_SEGMENT_SIZE, MemoryBackend, R3mapError } from "@r3map/core";
import { mapFile, touchOnThread, UffdRegion } from "@r3map/native";
import type { MountDescription } from "./description.js";
import { chunkSizeOf } from "./description.js";
import { MountEngine } from "./engine.js";
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
 * asynchronous write-protect finds them (`scanDirty`), and the pusher sends
 * them from the memfd to the remote.
 *
 * The engine reaches the memfd through a shared mapping of its own (a
 * MemoryBackend over it), so a fetch is received from the socket straight
 * into the memfd, with no intermediate buffer and no pwrite.
 *
 * A direct slice is the same with no background pull and pushes only on
 * `sync()` and close: the memory itself is the only copy kept locally.
 */
export class SliceDevice {
  readonly #timer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;
  /** Chunks that became local during this event-loop turn, mapped into the region together at its end. */
  #landed: number[] = [];

  private constructor(
    readonly engine: MountEngine,
    readonly region: UffdRegion,
    readonly size: number,
    scanIntervalMs: number | null,
    pulls: boolean,
  ) {
    // Pulled chunks are mapped as they land, so touching them takes no fault at all.
    if (pulls) {
      engine.on("chunk-local", (chunk) => {
        if (this.#landed.length === 0) setImmediate(() => this.#mapLanded());
        this.#landed.push(chunk);
      });
    }
    if (scanIntervalMs !== null) {
      this.#timer = setInterval(() => {
        this.sync().catch((error) => engine.reportError(error));
      }, scanIntervalMs);
      this.#timer.unref();
    }
  }

  /** Opens the engine and the region together (the region's memfd is the engine's cache). */
  static async open(description: MountDescription, remote?: Backend): Promise<SliceDevice> {
    const chunkSize = chunkSizeOf(description);
    if (chunkSize % PAGE_SIZE !== 0) {
      throw new R3mapError(
        "ERR_MISALIGNED",
        `a slice's chunk size must be a multiple of ${PAGE_SIZE}, got ${chunkSize}`,
      );
    }
    const managed = description.managed;
    const push = managed?.push;
    // The pusher is driven from here (scan, then flush), so its own timer is off.
    const engineDescription: MountDescription = {
      ...description,
      managed: {
        ...(managed ?? { pull: false }),
        push: push === false ? false : { workers: push?.workers ?? 16, intervalMs: null },
      },
    };
    let region: UffdRegion | undefined;
    let engine: MountEngine | undefined;
    try {
      engine = await MountEngine.open(
        engineDescription,
        (size) => {
          const presence = new ChunkBitmap(Math.ceil(size / chunkSize));
          const inFlight = new ChunkBitmap(Math.ceil(size / chunkSize));
          region = UffdRegion.create({
            size: Math.ceil(size / PAGE_SIZE) * PAGE_SIZE,
            chunkSize,
            memory: "memfd",
            cacheInMemfd: true,
            presence,
            inFlight,
            dirtyTracking: push !== false,
            onMiss: (chunk) => engine!.pipeline!.synced.ensureLocalForReader(chunk),
            onLanded: (chunk) => engine!.pipeline!.synced.landedNatively(chunk),
          });
          return { local: mappedCache(region.memfd, size), presence, inFlight };
        },
        remote ? { remote } : {},
      );
      const interval =
        !managed || push === false ? null : push?.intervalMs === undefined ? 5000 : push.intervalMs;
      const pulls = managed !== undefined && managed.pull !== false;
      const device = new SliceDevice(engine, region!, engine.size, interval, pulls);
      await engine.start(engineDescription);
      // A real fault, from a native thread: warms the region's miss path and the engine's alike.
      await engine.prime(
        (offset) => touchOnThread(region!.view(offset, PAGE_SIZE), 0),
        (chunk) => region!.evict(chunk),
      );
      // Over NBD, misses on chunks the engine is not fetching are fetched by native code from now on.
      const connection = await handOff(engine.remote);
      if (connection) region!.serveMissesFrom(connection);
      return device;
    } catch (error) {
      region?.close();
      await engine?.close().catch(() => {});
      throw error;
    }
  }

  /** The id another thread passes to `UffdRegion.attach` for its own view. */
  get regionId(): number {
    return this.region.id;
  }

  /**
   * The memory, as a Buffer of the resource's size. Touching it blocks until
   * the engine answers: never touch it on the thread that runs the engine.
   */
  get buffer(): Buffer {
    return this.region.buffer.subarray(0, this.size);
  }

  /** Finds the chunks written since the last scan and pushes them (and any other change) to the remote. */
  async sync(): Promise<void> {
    const pusher = this.engine.pipeline?.pusher;
    if (pusher) for (const chunk of this.region.scanDirtyChunks()) pusher.markDirty(chunk);
    await this.engine.sync();
  }

  /** Maps this turn's landed chunks, consecutive ones with one call into the kernel. */
  #mapLanded(): void {
    const chunks = this.#landed.sort((a, b) => a - b);
    this.#landed = [];
    if (this.#closing) return;
    for (let start = 0; start < chunks.length; ) {
      let end = start + 1;
      while (end < chunks.length && chunks[end] === chunks[end - 1]! + 1) end++;
      try {
        this.region.mapPresent(chunks[start]!, end - start);
      } catch (error) {
        // Left to the fault: touching the chunk maps it as before.
        this.engine.reportError(error);
        return;
      }
      start = end;
    }
  }

  /** Pushes the last writes, unmaps the memory, closes the engine. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#timer);
      try {
        await this.sync();
      } finally {
        this.region.close();
        await this.engine.close();
      }
    })();
    return this.#closing;
  }
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
