/**
 * A chunk marked remote while a fetch of it is under way (a migration's dirty
 * chunk, arriving while the pre-copy pull fetches it) must not be made
 * present by that fetch: its bytes may be older than the remote's.
 */
import { describe, expect, it } from "vitest";
import type { Backend } from "../backend.js";
import { MemoryBackend } from "../backends/memory.js";
import { patternBytes } from "../testing/index.js";
import { type Deferred, deferred } from "../util/abort.js";
import { Stage } from "./stage.js";
import { SyncedStage } from "./synced.js";

/** Reads hold until the test opens the gate, then read whatever the backend holds at that moment... */
class GatedReads extends Stage {
  gate: Deferred<void> | undefined;
  readonly started: Deferred<void> = deferred();

  override async readAt(buffer: Uint8Array, offset: number): Promise<void> {
    // ...copied before waiting: the fetch carries the bytes of the moment it was sent.
    await this.inner.readAt(buffer, offset);
    this.started.resolve();
    await this.gate?.promise;
  }
}

describe("SyncedStage.markRemote during a fetch", () => {
  it("the fetch lands but the chunk stays remote; the next read fetches the new bytes", async () => {
    const chunkSize = 4096;
    const remoteMemory = new MemoryBackend(4 * chunkSize);
    await remoteMemory.writeAt(patternBytes(4 * chunkSize, 1), 0);
    const remote = new GatedReads(remoteMemory);
    const synced = new SyncedStage(remote as Backend, new MemoryBackend(4 * chunkSize), { chunkSize });

    remote.gate = deferred();
    const pulling = synced.ensureLocal(2);
    await remote.started.promise; // the old bytes are on their way
    const changed = patternBytes(chunkSize, 9);
    await remoteMemory.writeAt(changed, 2 * chunkSize);
    synced.markRemote([2]);
    remote.gate.resolve();
    await pulling;
    expect(synced.isLocal(2)).toBe(false);

    remote.gate = undefined;
    const bytes = new Uint8Array(chunkSize);
    await synced.readAt(bytes, 2 * chunkSize);
    expect(Buffer.compare(bytes, changed)).toBe(0);
    expect(synced.isLocal(2)).toBe(true);
  });
});
