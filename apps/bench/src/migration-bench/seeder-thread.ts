import { createHash, randomBytes, randomFillSync } from "node:crypto";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { MemoryBackend } from "@r3map/core";
import { Seeder } from "@r3map/migration";
import { collectGarbage } from "./gc.js";

const ROLE = "r3map-migration-bench-seeder";

interface SeederWorkerData {
  role: typeof ROLE;
  size: number;
  chunkSize: number;
}

type Request = { call: "seed" } | { call: "dirty"; fraction: number } | { call: "hash" } | { call: "unseed" };

/** Where a started seeder listens. */
export interface SeederPorts {
  control: number;
  data: number;
}

/** What the application changed: whole chunks, as many as the fraction asks, distinct. */
export interface Dirtied {
  chunks: number;
  bytes: number;
  ms: number;
}

/**
 * The migration benchmark's source host on a thread of its own: a memory
 * resource of random bytes, seeded (Connect control plane and NBD data plane
 * on 127.0.0.1) as often as asked, each time a fresh `Seeder` over the same
 * memory. Its application — the bench's `dirty` call — writes whole chunks
 * through the seeder, which tracks them. On its own thread, it serves while
 * the leecher's thread is busy, as another host would.
 */
export class SeederThread {
  private constructor(private readonly worker: Worker) {}

  /** `entry` is the URL of a module that calls `serveSeederIfWorker()` at load (the benchmark itself). */
  static async start(entry: string | URL, size: number, chunkSize: number): Promise<SeederThread> {
    const data: SeederWorkerData = { role: ROLE, size, chunkSize };
    const worker = new Worker(new URL(entry), { workerData: data });
    const thread = new SeederThread(worker);
    try {
      await thread.#reply<"ready">();
      return thread;
    } catch (error) {
      await worker.terminate();
      throw error;
    }
  }

  /** Starts a seeder; a leecher may Track it at once. */
  seed(): Promise<SeederPorts> {
    return this.#call({ call: "seed" });
  }

  /** Writes `fraction` of the chunks (chosen at random, distinct) with new random bytes. */
  dirty(fraction: number): Promise<Dirtied> {
    return this.#call({ call: "dirty", fraction });
  }

  /** SHA-256 of the resource. */
  hash(): Promise<string> {
    return this.#call({ call: "hash" });
  }

  /** Stops the seeder (after a migration, or to seed afresh). */
  unseed(): Promise<void> {
    return this.#call({ call: "unseed" });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }

  #call<T>(request: Request): Promise<T> {
    const reply = this.#reply<T>();
    this.worker.postMessage(request);
    return reply;
  }

  #reply<T>(): Promise<T> {
    return new Promise((resolve, reject) => {
      const onMessage = (message: { ok: true; value: T } | { ok: false; error: string }) => {
        this.worker.off("error", reject);
        if (message.ok) resolve(message.value);
        else reject(new Error(`seeder thread: ${message.error}`));
      };
      this.worker.once("message", onMessage);
      this.worker.once("error", reject);
    });
  }
}

/** When this thread is a seeder thread started by `SeederThread.start`: serves its calls. */
export async function serveSeederIfWorker(): Promise<void> {
  if (isMainThread) return;
  const data = workerData as Partial<SeederWorkerData> | undefined;
  if (data?.role !== ROLE || !data.size || !data.chunkSize) return;
  const { size, chunkSize } = data as SeederWorkerData;
  const memory = new MemoryBackend(size);
  for (const segment of memory.segments) randomFillSync(segment);
  let seeder: Seeder | undefined;
  const calls: Record<Request["call"], (request: Request) => Promise<unknown>> = {
    seed: async () => {
      collectGarbage();
      seeder = await Seeder.start(memory, { chunkSize });
      return { control: seeder.control.port, data: seeder.data!.port } satisfies SeederPorts;
    },
    dirty: async (request) => {
      const { fraction } = request as { fraction: number };
      const chunks = Math.ceil(size / chunkSize);
      const count = Math.round(chunks * fraction);
      const chosen = new Set<number>();
      while (chosen.size < count) chosen.add(randomBytes(4).readUInt32LE() % chunks);
      const started = performance.now();
      let bytes = 0;
      for (const chunk of chosen) {
        const length = Math.min(chunkSize, size - chunk * chunkSize);
        // Through the seeder's resource: the tracked write path an application uses.
        await seeder!.resource.backend.writeAt(randomBytes(length), chunk * chunkSize);
        bytes += length;
      }
      return { chunks: count, bytes, ms: performance.now() - started } satisfies Dirtied;
    },
    hash: async () => {
      const hash = createHash("sha256");
      for (const segment of memory.segments) hash.update(segment);
      return hash.digest("hex");
    },
    unseed: async () => {
      await seeder?.close();
      seeder = undefined;
    },
  };
  parentPort!.on("message", (request: Request) => {
    calls[request.call](request).then(
      (value) => parentPort!.postMessage({ ok: true, value }),
      (error: unknown) => parentPort!.postMessage({ ok: false, error: String(error) }),
    );
  });
  parentPort!.postMessage({ ok: true, value: "ready" });
}
