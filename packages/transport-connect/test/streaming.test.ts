import { MemoryBackend, type Progress, TrackingStage } from "@r3map/core";
import { InstrumentedBackend, patternBytes, waitFor } from "@r3map/core/testing";
import { describe, expect, it } from "vitest";
import { ConnectBackend, ConnectServer, type Seeder, SeederClient } from "../src/index.js";

describe("ReadStream", () => {
  it("streams a range in order in pieces of the requested size, over gRPC and Connect", async () => {
    const size = 3 * 1024 * 1024 + 100;
    const memory = new MemoryBackend(size);
    const data = patternBytes(size, 9);
    await memory.writeAt(data, 0);
    const server = await ConnectServer.listen({ backend: memory });
    try {
      for (const protocol of ["grpc", "connect"] as const) {
        const client = await ConnectBackend.connect({ baseUrl: server.baseUrl, protocol });
        try {
          const got = new Uint8Array(size - 50);
          const lengths: number[] = [];
          for await (const piece of client.readStream(50, size - 50, { chunkSize: 256 * 1024 })) {
            got.set(piece.data, piece.offset - 50);
            lengths.push(piece.data.length);
          }
          expect(Buffer.compare(got, data.subarray(50))).toBe(0);
          expect(Math.max(...lengths)).toBe(256 * 1024);
          expect(lengths.length).toBe(Math.ceil((size - 50) / (256 * 1024)));
        } finally {
          await client.close();
        }
      }
    } finally {
      await server.close();
    }
  });

  it("refuses a range past the end with ERR_OUT_OF_RANGE, and stops reading when the client leaves early", async () => {
    const backend = new InstrumentedBackend(new MemoryBackend(64 * 64 * 1024));
    const server = await ConnectServer.listen({ backend, chunkSize: 64 * 1024 });
    const client = await ConnectBackend.connect({ baseUrl: server.baseUrl });
    try {
      const lying = await ConnectBackend.connect({ baseUrl: server.baseUrl, size: backend.size * 2 });
      await expect(async () => {
        for await (const _ of lying.readStream(backend.size, 1024)) break;
      }).rejects.toMatchObject({ code: "ERR_OUT_OF_RANGE" });
      await lying.close();

      // Two pieces pass; the server's read of the third is held until the client has left.
      backend.readGate.allow(2);
      let seen = 0;
      for await (const _ of client.readStream(0, backend.size)) {
        if (++seen === 2) break;
      }
      await waitFor(() => backend.readGate.waiting === 1, "the server to read on ahead");
      // One connection, frames in order: once this call is answered, the server has seen the cancel.
      await client.sync();
      backend.readGate.open();
      // The server notices the cancel and stops well before the 64 chunks.
      const check = new Uint8Array(16);
      await client.readAt(check, 0);
      expect(backend.reads.length).toBeLessThan(20);
    } finally {
      await client.close();
      await server.close();
    }
  });
});

describe("WatchProgress", () => {
  it("reports the server's progress until the client stops; unsupported without a source", async () => {
    let fetches = 0;
    const progress = (): Progress => ({
      chunksTotal: 10,
      chunksLocal: fetches,
      bytesPulled: fetches * 4096,
      bytesPushed: 0,
      dirtyChunks: 1,
      fetches: fetches++,
      meanFetchMs: 1.5,
    });
    const server = await ConnectServer.listen({ backend: new MemoryBackend(40960), progress });
    const plain = await ConnectServer.listen({ backend: new MemoryBackend(4096) });
    const client = await ConnectBackend.connect({ baseUrl: server.baseUrl });
    const other = await ConnectBackend.connect({ baseUrl: plain.baseUrl });
    try {
      expect(client.info.progress).toBe(true);
      const seen: Progress[] = [];
      for await (const report of client.watchProgress({ intervalMs: 50 })) {
        seen.push(report);
        if (seen.length === 3) break;
      }
      expect(seen.map((p) => p.fetches)).toEqual([0, 1, 2]);
      expect(seen[2]).toMatchObject({ chunksTotal: 10, chunksLocal: 2, bytesPulled: 8192, meanFetchMs: 1.5 });
      await expect(async () => {
        for await (const _ of other.watchProgress()) break;
      }).rejects.toMatchObject({ code: "ERR_NOT_SUPPORTED" });
    } finally {
      await client.close();
      await other.close();
      await plain.close();
      await server.close();
    }
  });

  it("ends open watches when the client or the server closes", async () => {
    const server = await ConnectServer.listen({
      backend: new MemoryBackend(4096),
      progress: () => zeroProgress,
    });
    const client = await ConnectBackend.connect({ baseUrl: server.baseUrl });
    let reports = 0;
    const watching = (async () => {
      for await (const _ of client.watchProgress({ intervalMs: 50 })) reports++;
    })();
    await waitFor(() => reports > 0, "the watch to report");
    await client.close();
    await expect(watching).rejects.toMatchObject({ code: "ERR_CLOSED" });

    const second = await ConnectBackend.connect({ baseUrl: server.baseUrl });
    let secondReports = 0;
    const ended = (async () => {
      for await (const _ of second.watchProgress({ intervalMs: 50 })) secondReports++;
      return secondReports;
    })();
    await waitFor(() => secondReports > 0, "the second watch to report");
    await server.close();
    expect(await ended).toBeGreaterThan(0);
    await second.close();
  });
});

const zeroProgress: Progress = {
  chunksTotal: 0,
  chunksLocal: 0,
  bytesPulled: 0,
  bytesPushed: 0,
  dirtyChunks: 0,
  fetches: 0,
  meanFetchMs: 0,
};

describe("migration control (MigrationService and the original Seeder through SeederClient)", () => {
  function trackingSeeder(size: number, chunkSize: number) {
    const tracking = new TrackingStage(new MemoryBackend(size), chunkSize);
    const state = { closed: false, finalized: false };
    const seeder: Seeder = {
      backend: tracking,
      chunkSize,
      track: () => tracking.track(),
      sync: () => tracking.takeDirty().map((chunk) => chunk * chunkSize),
      finalize: () => {
        state.finalized = true;
        return tracking.stopTracking().map((chunk) => chunk * chunkSize);
      },
      close: () => {
        state.closed = true;
      },
    };
    return { tracking, seeder, state };
  }

  it("runs pre-copy rounds and a final round with chunk indexes", async () => {
    const chunkSize = 64 * 1024;
    const { tracking, seeder, state } = trackingSeeder(16 * chunkSize, chunkSize);
    const server = await ConnectServer.listen({ seeder });
    const client = await SeederClient.connect({ baseUrl: server.baseUrl });
    try {
      expect(client.info.migration).toBe(true);
      expect(client.info.chunkSize).toBe(chunkSize);
      expect(await client.migration.track()).toEqual({ chunkSize, size: 16 * chunkSize });
      await tracking.writeAt(patternBytes(10, 1), 5 * chunkSize + 3);
      await tracking.writeAt(patternBytes(chunkSize + 2, 2), 1 * chunkSize);
      expect(await client.migration.sync()).toEqual({ chunkSize, chunks: [1, 2, 5] });
      await tracking.writeAt(patternBytes(10, 3), 9 * chunkSize);
      // The leecher pulls with the original ReadAt, split under the cap.
      const got = new Uint8Array(10);
      await client.readAt(got, 9 * chunkSize);
      expect(Buffer.compare(got, patternBytes(10, 3))).toBe(0);
      expect(await client.migration.finalize()).toEqual({ chunkSize, chunks: [9] });
      expect(state.finalized).toBe(true);
      await client.migration.close();
      expect(state.closed).toBe(true);
    } finally {
      await client.release();
      await server.close();
    }
  });

  it("speaks the original protocol: Track, Sync (dirty offsets), Close", async () => {
    const chunkSize = 4096;
    const { tracking, seeder, state } = trackingSeeder(64 * chunkSize, chunkSize);
    const server = await ConnectServer.listen({ seeder });
    // As against an original Go seeder: the size is passed, GetInfo is not called.
    const client = await SeederClient.connect({ baseUrl: server.baseUrl, size: 64 * chunkSize });
    try {
      await client.track();
      await tracking.writeAt(new Uint8Array(1), 7 * chunkSize);
      expect(await client.sync()).toEqual([7 * chunkSize]);
      await client.close();
      expect(state.closed).toBe(true);
    } finally {
      await client.release();
      await server.close();
    }
  });

  it("has no migration service when serving a plain backend", async () => {
    const server = await ConnectServer.listen({ backend: new MemoryBackend(4096) });
    const client = await SeederClient.connect({ baseUrl: server.baseUrl });
    try {
      expect(client.info.migration).toBe(false);
      await expect(client.migration.track()).rejects.toMatchObject({ code: "ERR_NOT_SUPPORTED" });
      await expect(client.track()).rejects.toMatchObject({ code: "ERR_NOT_SUPPORTED" });
    } finally {
      await client.release();
      await server.close();
    }
  });
});
