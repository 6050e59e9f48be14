/**
 * The engine thread of a mount: builds the engine and its device from a plain
 * description, answers the main thread's requests, and forwards progress. The
 * device's native threads call back into this thread, never the main one, so
 * the main thread can touch the mount freely.
 */
import { parentPort } from "node:worker_threads";
import { MountCore } from "../mount-core.js";
import { type Notice, type Reply, type Request, serializeError } from "./protocol.js";

const port = parentPort!;
let mount: MountCore | undefined;
let lastProgressAt = 0;

function notify(notice: Notice): void {
  port.postMessage(notice);
}

async function handle(request: Request): Promise<Reply> {
  try {
    switch (request.op) {
      case "open": {
        mount = await MountCore.open(request.frontend, request.description, request.options);
        mount.engine.on("progress", (progress) => {
          // At most ten progress messages a second cross the thread boundary.
          const now = performance.now();
          if (now - lastProgressAt < 100 && progress.chunksLocal < progress.chunksTotal) return;
          lastProgressAt = now;
          notify({ event: "progress", progress });
        });
        mount.engine.on("error", (error) => notify({ event: "error", error: serializeError(error) }));
        if (request.chunkEvents) {
          mount.engine.on("chunk-local", (chunk, origin) => notify({ event: "chunk-local", chunk, origin }));
        }
        return { id: request.id, ok: true, value: mount.handle };
      }
      case "progress":
        return { id: request.id, ok: true, value: mount?.progress() };
      case "sync":
        await mount?.sync();
        return { id: request.id, ok: true };
      case "refresh":
        await mount?.refresh(request.chunks);
        return { id: request.id, ok: true };
      case "close":
        await mount?.close();
        return { id: request.id, ok: true };
    }
  } catch (error) {
    return { id: request.id, ok: false, error: serializeError(error) };
  }
}

port.on("message", (request: Request) => {
  handle(request).then((reply) => {
    port.postMessage(reply);
    if (request.op === "close") port.close();
  });
});
