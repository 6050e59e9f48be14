/**
 * Delta sync of 1 GiB with 1 % of its 4 KiB pages changed: `r3map sync push`
 * to `r3map serve --connect` (which hashes its own copy) against
 * `rsync --inplace --no-whole-file` through an rsync daemon on 127.0.0.1, at
 * 0 and 10 ms RTT (the delay proxy in front of both); and native chunk
 * hashing against xxhsum and b3sum on the same file.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { promisify } from "node:util";
import { digestWhole } from "@r3map/native";
import { DelayProxy } from "../delay-proxy.js";
import { type Benchmark, type BenchResult, result } from "../harness.js";
import { freePort, have, waitForPort } from "../programs.js";

const run = promisify(execFile);
const MiB = 1024 * 1024;
const SIZE = 1024 * MiB;
const PAGE = 4096;
const cli = join(createRequire(import.meta.url).resolve("r3map/package.json"), "..", "dist", "cli.js");

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

/** Changes one byte in 1 % of the file's 4 KiB pages, chosen at random (seeded). */
function changePages(path: string, seed: number): number {
  const pages = SIZE / PAGE;
  const changed = new Set<number>();
  let state = seed;
  while (changed.size < pages / 100) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    changed.add(state % pages);
  }
  const fd = openSync(path, "r+");
  for (const page of changed) writeSync(fd, Buffer.from([page & 0xff, 0x5a]), 0, 2, page * PAGE + 17);
  closeSync(fd);
  return changed.size;
}

/** Wall time of a command to its end, in ms. */
async function timed(command: string, args: string[]): Promise<{ ms: number; stdout: string }> {
  const started = performance.now();
  const { stdout } = await run(command, args, { maxBuffer: 64 * MiB });
  return { ms: performance.now() - started, stdout };
}

async function sameFiles(a: string, b: string): Promise<boolean> {
  return run("cmp", ["-s", a, b]).then(
    () => true,
    () => false,
  );
}

/** An rsync daemon on 127.0.0.1 serving `dir` as module `m`, writable. */
async function startRsyncd(dir: string, scratch: string): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const config = join(scratch, "rsyncd.conf");
  writeFileSync(
    config,
    `use chroot = no\nuid = root\ngid = root\npid file = ${join(scratch, "rsyncd.pid")}\n[m]\npath = ${dir}\nread only = false\n`,
  );
  const child = spawn(
    "rsync",
    ["--daemon", "--no-detach", `--config=${config}`, `--port=${port}`, "--address=127.0.0.1"],
    {
      stdio: "ignore",
    },
  );
  await waitForPort(port, child);
  return { child, port };
}

const bench: Benchmark = {
  name: "sync",
  description:
    "delta sync of 1 GiB with 1 % of 4 KiB pages changed (r3map sync push vs rsync --inplace --no-whole-file at 0 and 10 ms RTT); chunk hashing vs xxhsum and b3sum",
  skip: () => {
    for (const program of ["rsync", "xxhsum", "b3sum", "cmp"])
      if (!have(program)) return `${program} is not installed`;
    if (!existsSync(cli)) return "the r3map CLI is not built (pnpm build)";
    return undefined;
  },
  async run({ scratch, log }) {
    const rows: BenchResult[] = [];
    const base = join(scratch, "base.img");
    const local = join(scratch, "local.img");
    await run("sh", ["-c", `head -c ${SIZE} /dev/urandom > '${base}'`]);
    copyFileSync(base, local);
    const changed = changePages(local, 20_231);
    log(`1 GiB, ${changed} pages (4 KiB) changed`);

    // Hashing, page cache warm for everyone (each tool reads the file once before it is timed).
    const best = async (operation: () => Promise<unknown>) => {
      await operation();
      let ms = Number.POSITIVE_INFINITY;
      for (let i = 0; i < 3; i++) {
        const started = performance.now();
        await operation();
        ms = Math.min(ms, performance.now() - started);
      }
      return SIZE / MiB / (ms / 1000);
    };
    const xxhsum = await best(() => run("xxhsum", ["-H2", local]));
    const b3sum = await best(() => run("b3sum", [local]));
    const faster = Math.max(xxhsum, b3sum);
    const fasterName = xxhsum >= b3sum ? "xxhsum -H2" : "b3sum";
    for (const chunkSize of [MiB, 64 * 1024, PAGE]) {
      const ours = await best(() => digestWhole({ path: local }, SIZE, chunkSize, { algorithm: "xxh3-128" }));
      rows.push(
        result(`hash xxh3-128 per ${chunkSize / 1024} KiB chunk (MiB/s)`, ours, "MiB/s", fasterName, faster),
      );
    }
    const blake3 = await best(() => digestWhole({ path: local }, SIZE, MiB, { algorithm: "blake3" }));
    rows.push(result("hash blake3 per 1 MiB chunk (MiB/s)", blake3, "MiB/s", "b3sum", b3sum));

    for (const rttMs of [0, 10]) {
      // r3map: a fresh stale copy served over Connect.
      const remote = join(scratch, "remote.img");
      copyFileSync(base, remote);
      const servePort = await freePort();
      const server = spawn(
        process.execPath,
        [cli, "serve", `file://${remote}`, "--connect", `127.0.0.1:${servePort}`],
        {
          stdio: "ignore",
        },
      );
      let proxy: DelayProxy | undefined;
      try {
        await waitForPort(servePort, server);
        proxy =
          rttMs > 0
            ? await DelayProxy.start({
                target: { host: "127.0.0.1", port: servePort },
                oneWayDelayMs: rttMs / 2,
              })
            : undefined;
        const port = proxy?.port ?? servePort;
        const ours = await timed(process.execPath, [
          cli,
          "sync",
          "push",
          local,
          `r3map+h2c://127.0.0.1:${port}`,
          "--json",
        ]);
        const done = JSON.parse(ours.stdout.trim().split("\n").at(-1)!) as {
          bytesMoved: number;
          digestBytes: number;
        };
        if (!(await sameFiles(local, remote))) throw new Error("r3map sync push did not converge");
        log(
          `${rttMs} ms: r3map moved ${done.bytesMoved} bytes + ${done.digestBytes} of digests in ${ours.ms.toFixed(0)} ms`,
        );
        await proxy?.close();
        proxy = undefined;
        await stop(server);

        // rsync: the same stale copy in a daemon's module.
        const module = join(scratch, "rsync");
        mkdirSync(module, { recursive: true });
        copyFileSync(base, join(module, "remote.img"));
        const daemon = await startRsyncd(module, scratch);
        try {
          proxy =
            rttMs > 0
              ? await DelayProxy.start({
                  target: { host: "127.0.0.1", port: daemon.port },
                  oneWayDelayMs: rttMs / 2,
                })
              : undefined;
          const port = proxy?.port ?? daemon.port;
          const theirs = await timed("rsync", [
            "--inplace",
            "--no-whole-file",
            "--stats",
            local,
            `rsync://127.0.0.1:${port}/m/remote.img`,
          ]);
          if (!(await sameFiles(local, join(module, "remote.img"))))
            throw new Error("rsync did not converge");
          const sent = Number(
            /Total bytes sent: ([\d,]+)/.exec(theirs.stdout)?.[1]?.replaceAll(",", "") ?? 0,
          );
          log(`${rttMs} ms: rsync sent ${sent} bytes in ${theirs.ms.toFixed(0)} ms`);
          const budget = 0.015 * SIZE + done.digestBytes;
          rows.push(
            result(
              `sync push 1 GiB, 1 % changed, ${rttMs} ms RTT: bytes moved (data + digests)`,
              done.bytesMoved + done.digestBytes,
              "bytes",
              "1.5 % of the size + digests",
              budget,
            ),
            result(
              `sync push 1 GiB, 1 % changed, ${rttMs} ms RTT: time (lower is better)`,
              ours.ms,
              "ms",
              "rsync --inplace --no-whole-file",
              theirs.ms,
            ),
            result(
              `rsync 1 GiB, 1 % changed, ${rttMs} ms RTT: bytes sent`,
              sent,
              "bytes",
              "r3map bytes moved",
              done.bytesMoved + done.digestBytes,
            ),
          );
        } finally {
          await proxy?.close();
          proxy = undefined;
          await stop(daemon.child);
        }
      } finally {
        await proxy?.close();
        await stop(server);
      }
    }
    return rows;
  },
};

export default bench;
