import * as fs from "node:fs";
import { totalmem } from "node:os";
import { Worker } from "node:worker_threads";
import { addExamples, type Output, outputFor, sizeOption } from "@r3map/cli-kit";
import { formatBytes } from "@r3map/core";
import { mountFile, mountSlice } from "@r3map/mount";
import { NbdClient } from "@r3map/nbd";
import type { Command } from "commander";
import { migrationDemo } from "../demo-migration.js";
import { chunkSizeOption, jsonOption, pullWorkersOption } from "../options.js";
import { fillPattern, type Overwrite, verifyPattern } from "../pattern.js";

export interface DemoOptions {
  size: number;
  chunkSize: number;
  pullWorkers: number;
  json?: boolean;
}

export function demoCommand(program: Command): void {
  const command = program
    .command("demo")
    .summary(
      "mount a memory backend served over NBD as a file and as a slice; read, write, migrate, verify, print how fast",
    )
    .description(
      "Serve memory over NBD on 127.0.0.1 (from a worker thread, standing in for another host), mount it managed as a file and as a slice, read every byte, write through both, and verify the mount and — after close — the remote byte for byte; then migrate the memory, mounted again as a slice, to a second slice while an application thread writes into it, and check that the second holds the first's memory at its last round. Prints the throughput, downtime and time of each step. Needs root (FUSE, userfaultfd).",
    )
    .addOption(
      sizeOption(
        "--size <bytes>",
        "resource size: 1 MiB up to this machine's memory",
        { min: 1024 ** 2, max: totalmem() },
        "256MiB",
      ),
    )
    .addOption(chunkSizeOption())
    .addOption(pullWorkersOption())
    .addOption(jsonOption())
    .action((options: DemoOptions, self: Command) => demo(options, outputFor(self)));
  addExamples(command, [
    { what: "Run the demo on 256 MiB", line: "r3map demo" },
    {
      what: "Run it on 64 MiB in 256 KiB chunks pulled by 8 workers",
      line: "r3map demo --size 64MiB --chunk-size 256KiB --pull-workers 8",
    },
  ]);
}

const rate = (bytes: number, ms: number) => `${formatBytes((bytes / ms) * 1000)}/s`;

async function timed<T>(work: () => T | Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const value = await work();
  return [value, performance.now() - start];
}

/** Reads the whole remote through an NBD client and checks it against the pattern and the overwrites. */
async function verifyRemote(
  uri: string,
  size: number,
  overwrites: Overwrite[],
  output: Output,
): Promise<void> {
  const client = await NbdClient.connect({ port: Number(new URL(uri).port), export: "demo" });
  try {
    const piece = new Uint8Array(Math.min(size, 16 * 1024 * 1024));
    const label = `verified on the remote (${overwrites.length} write${overwrites.length === 1 ? "" : "s"})`;
    for (let offset = 0; offset < size; offset += piece.length) {
      const part = piece.subarray(0, Math.min(piece.length, size - offset));
      await client.readAt(part, offset);
      verifyPattern(part, offset, overwrites, "remote");
      output.progress({ label, done: offset + part.length, total: size });
    }
  } finally {
    await client.close();
  }
}

/**
 * The mount demo on embedded defaults: a memory backend served over NBD on
 * loopback (from a worker thread, as a stand-in for another host), mounted
 * managed as a file and as a slice with the engine on its own worker thread;
 * a workload read and written through each from the main thread, verified
 * byte for byte — through the mount and, after close, on the remote.
 */
export async function demo(options: DemoOptions, output: Output): Promise<void> {
  const { size, chunkSize, pullWorkers: workers } = options;
  const say = (text: string) => output.say(text);
  const server = new Worker(new URL("./nbd-server-worker.js", import.meta.url), { workerData: { size } });
  const { port } = await new Promise<{ port: number }>((resolve, reject) => {
    server.once("message", resolve).once("error", reject);
  });
  const remote = `nbd://127.0.0.1:${port}/demo`;
  output.start(
    { remote, size, chunkSize },
    `remote: ${formatBytes(size)} of memory served over NBD at ${remote}`,
  );
  const overwrites: Overwrite[] = [];
  const description = {
    remote,
    chunkSize,
    managed: { pull: workers > 0 ? { workers } : (false as const), push: { intervalMs: 500 } },
  };
  try {
    // The file frontend: a FUSE file, read with plain synchronous fs calls on this thread.
    const [file, openMs] = await timed(() => mountFile(description));
    say(`\nfile mount (managed): ${file.path}, open in ${openMs.toFixed(1)} ms, background pull started`);
    const [bytes, readMs] = await timed(() => fs.readFileSync(file.path));
    verifyPattern(bytes, 0, overwrites, "file");
    say(`  readFileSync of the cold file: ${rate(size, readMs)}, every byte correct`);
    const update: Overwrite = {
      offset: Math.floor(size / 3) + 123,
      length: Math.min(size / 4, 8 << 20),
      seed: 2,
    };
    const data = new Uint8Array(update.length);
    fillPattern(data, update.offset, update.seed);
    const fd = fs.openSync(file.path, "r+");
    const [, writeMs] = await timed(() => fs.writeSync(fd, data, 0, data.length, update.offset));
    fs.closeSync(fd);
    overwrites.push(update);
    say(`  wrote ${formatBytes(update.length)} at offset ${update.offset}: ${rate(update.length, writeMs)}`);
    const [, closeMs] = await timed(() => file.close());
    say(`  closed (final push included) in ${closeMs.toFixed(1)} ms`);
    await verifyRemote(remote, size, overwrites, output);
    say("  the remote holds the write, byte for byte");

    // The slice frontend: the same resource as memory, faulted in chunk by chunk.
    const [slice, sliceOpenMs] = await timed(() => mountSlice(description));
    say(
      `\nslice mount (managed, userfaultfd): ${formatBytes(slice.size)} Buffer, open in ${sliceOpenMs.toFixed(1)} ms`,
    );
    const [sum, touchMs] = await timed(() => {
      let total = 0;
      for (let offset = 0; offset < slice.size; offset += 4096) total += slice.buffer[offset]!;
      return total;
    });
    say(`  touched every page of the cold slice: ${rate(size, touchMs)} (checksum ${sum})`);
    verifyPattern(slice.buffer, 0, overwrites, "slice");
    say("  every byte correct, including the file mount's write");
    const second: Overwrite = { offset: 4096 * 3 + 17, length: Math.min(size / 8, 4 << 20), seed: 3 };
    fillPattern(
      slice.buffer.subarray(second.offset, second.offset + second.length),
      second.offset,
      second.seed,
    );
    overwrites.push(second);
    const progress = await slice.progress();
    say(
      `  wrote ${formatBytes(second.length)} into memory; ${progress?.chunksLocal}/${progress?.chunksTotal} chunks local`,
    );
    const [, sliceCloseMs] = await timed(() => slice.close());
    say(`  closed (dirty pages found by write-protect, pushed) in ${sliceCloseMs.toFixed(1)} ms`);
    await verifyRemote(remote, size, overwrites, output);
    say("  the remote holds both writes, byte for byte");

    // Migration: that memory moves to a second slice while an application keeps writing into it.
    const migration = await migrationDemo(description, workers, output);
    output.done({ verified: true, migration }, "the demo is done: every step verified");
  } finally {
    server.postMessage("close");
    await new Promise((resolve) => server.once("message", resolve));
    await server.terminate();
  }
}
