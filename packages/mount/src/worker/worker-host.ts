import { Worker } from "node:worker_threads";
import { type Progress, R3mapError } from "@r3map/core";
import type { MountDescription } from "../description.js";
import type { DeviceOptions, Frontend, MountHandle } from "../device.js";
import { deserializeError, type Notice, type Reply, type Request } from "./protocol.js";

/** A request as sent by the caller: the id is added here. */
type Outgoing = Request extends infer R ? (R extends Request ? Omit<R, "id"> : never) : never;

type Pending = { resolve: (value: Reply & { ok: true }) => void; reject: (error: unknown) => void };

/** The main thread's end of an engine worker: requests with ids, replies matched to them. */
export class WorkerHost {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #next = 1;
  #exited: Error | undefined;

  constructor(onNotice: (notice: Notice) => void) {
    // The built package keeps the worker entry at dist/worker/engine-worker.js, beside the bundle this runs in.
    this.#worker = new Worker(new URL("./worker/engine-worker.js", import.meta.url));
    this.#worker.on("message", (message: Reply | Notice) => {
      if ("event" in message) {
        onNotice(message);
        return;
      }
      const pending = this.#pending.get(message.id);
      this.#pending.delete(message.id);
      if (message.ok) pending?.resolve(message);
      else pending?.reject(deserializeError(message.error));
    });
    this.#worker.on("error", (error) => this.#fail(error));
    this.#worker.on("exit", (code) => this.#fail(new Error(`the engine worker exited with code ${code}`)));
  }

  async open(
    frontend: Frontend,
    description: MountDescription,
    options: DeviceOptions,
    chunkEvents: boolean,
  ): Promise<MountHandle> {
    try {
      return (await this.#call({ op: "open", frontend, description, options, chunkEvents })) as MountHandle;
    } catch (error) {
      await this.#worker.terminate();
      throw error;
    }
  }

  async progress(): Promise<Progress | undefined> {
    return (await this.#call({ op: "progress" })) as Progress | undefined;
  }

  async sync(): Promise<void> {
    await this.#call({ op: "sync" });
  }

  async refresh(chunks: readonly number[]): Promise<void> {
    await this.#call({ op: "refresh", chunks: [...chunks] });
  }

  async close(): Promise<void> {
    try {
      await this.#call({ op: "close" });
    } finally {
      await this.#worker.terminate();
    }
  }

  #call(request: Outgoing): Promise<unknown> {
    if (this.#exited) return Promise.reject(this.#exited);
    const id = this.#next++;
    return new Promise<Reply & { ok: true }>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ ...request, id } as Request);
    }).then((reply) => reply.value);
  }

  #fail(error: Error): void {
    this.#exited ??= new R3mapError("ERR_CLOSED", `the mount's engine is gone: ${error.message}`, {
      cause: error,
    });
    for (const pending of this.#pending.values()) pending.reject(this.#exited);
    this.#pending.clear();
  }
}
