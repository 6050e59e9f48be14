import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { DelayProxy, type Forwarded } from "../delay-proxy.js";

const ROLE = "r3map-mount-bench-delay-proxy";

interface ProxyWorkerData {
  role: typeof ROLE;
  target: { host: string; port: number };
  oneWayDelayMs: number;
}

/**
 * A DelayProxy on its own thread. The mount benchmark reads mounts
 * synchronously from the main thread (readSync, touching a slice); a proxy on
 * the main thread would then stop forwarding the very bytes the read waits
 * for. On a worker thread it keeps running whatever the main thread does.
 */
export class ProxyThread {
  private constructor(
    private readonly worker: Worker,
    readonly port: number,
    readonly oneWayDelayMs: number,
  ) {}

  /** `entry` is the URL of a module that calls `serveProxyIfWorker()` at load (the benchmark itself). */
  static async start(
    entry: string | URL,
    target: { host: string; port: number },
    oneWayDelayMs: number,
  ): Promise<ProxyThread> {
    const data: ProxyWorkerData = { role: ROLE, target, oneWayDelayMs };
    const worker = new Worker(new URL(entry), { workerData: data });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error("the delay proxy thread did not start within 10 s")),
          10_000,
        );
        worker.once("message", (message: number) => {
          clearTimeout(timer);
          resolve(message);
        });
        worker.once("error", reject);
        worker.once("exit", (code) => reject(new Error(`the delay proxy thread exited with code ${code}`)));
      });
      return new ProxyThread(worker, port, oneWayDelayMs);
    } catch (error) {
      await worker.terminate();
      throw error;
    }
  }

  /** The bytes the proxy forwarded so far, each way. */
  forwarded(): Promise<Forwarded> {
    return new Promise((resolve, reject) => {
      this.worker.once("message", resolve).once("error", reject);
      this.worker.postMessage("forwarded");
    });
  }

  /** Ends the thread, and with it the proxy and every connection through it. */
  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

/** When this thread is a proxy thread started by `ProxyThread.start`: runs the proxy and reports its port. */
export async function serveProxyIfWorker(): Promise<void> {
  if (isMainThread) return;
  const data = workerData as Partial<ProxyWorkerData> | undefined;
  if (data?.role !== ROLE || !data.target || data.oneWayDelayMs === undefined) return;
  const proxy = await DelayProxy.start({ target: data.target, oneWayDelayMs: data.oneWayDelayMs });
  parentPort!.on("message", (message) => {
    if (message === "forwarded") parentPort!.postMessage({ ...proxy.forwarded });
  });
  parentPort!.postMessage(proxy.port);
}
