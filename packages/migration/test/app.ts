import * as path from "node:path";
import { Worker } from "node:worker_threads";

const fixture = path.join(import.meta.dirname, "fixtures/invariant-app.mjs");

type Message = { event: string; [key: string]: unknown };

/** The invariant-keeping application of `fixtures/invariant-app.mjs`, on a worker thread over a slice's memory. */
export class SliceApp {
  readonly #worker: Worker;
  readonly #control = new Int32Array(new SharedArrayBuffer(8));
  readonly #messages: Message[] = [];
  readonly #waiters: Array<{ event: string; resolve: (m: Message) => void; reject: (e: unknown) => void }> =
    [];
  #failure: unknown;

  constructor(
    regionId: number,
    size: number,
    chunkSize: number,
    seed: number,
    mode: "run" | "verify" | "hash",
  ) {
    this.#worker = new Worker(fixture, {
      workerData: { regionId, size, chunkSize, seed, mode, control: this.#control.buffer },
    });
    this.#worker.on("message", (message: Message) => {
      const waiter = this.#waiters.findIndex((w) => w.event === message.event);
      if (waiter >= 0) this.#waiters.splice(waiter, 1)[0]!.resolve(message);
      else this.#messages.push(message);
    });
    const fail = (error: unknown) => {
      this.#failure = error;
      for (const w of this.#waiters.splice(0)) w.reject(error);
    };
    this.#worker.on("error", fail);
    this.#worker.on("exit", (code) => fail(new Error(`the app exited (code ${code})`)));
  }

  /** The next message of this kind (one that arrived already, or the next to come). */
  next(event: string): Promise<Message> {
    const index = this.#messages.findIndex((m) => m.event === event);
    if (index >= 0) return Promise.resolve(this.#messages.splice(index, 1)[0]!);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => this.#waiters.push({ event, resolve, reject }));
  }

  /** Stops the app between two updates; resolves once it is stopped. */
  async suspend(): Promise<Message> {
    Atomics.store(this.#control, 0, 1);
    return this.next("suspended");
  }

  resume(): void {
    Atomics.store(this.#control, 0, 0);
    Atomics.notify(this.#control, 0);
  }

  /** Ends the app; resolves with its result. */
  async exit(): Promise<Message> {
    const result = this.next("result");
    Atomics.store(this.#control, 0, 2);
    Atomics.notify(this.#control, 0);
    return result;
  }

  terminate(): Promise<number> {
    return this.#worker.terminate();
  }
}

/** Hashes a slice's whole memory on a worker thread (this thread may be serving its faults). */
export async function hashSlice(regionId: number, size: number, chunkSize: number): Promise<string> {
  const hasher = new SliceApp(regionId, size, chunkSize, 0, "hash");
  try {
    return (await hasher.next("result")).sha256 as string;
  } finally {
    await hasher.terminate();
  }
}
