import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { SimulatedTape, type SimulatedTapeOptions } from "../src/simulated-tape.js";
import { TapeBackend } from "../src/tape-backend.js";

export function scratchDirectory(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `tapisk-${prefix}-`));
}

/** A simulated tape and its index in `dir`, opened as a backend of `size` bytes. */
export async function openSimulated(
  dir: string,
  size: number,
  options: Partial<SimulatedTapeOptions> & { gatherMs?: number; skipWithin?: number } = {},
): Promise<{ backend: TapeBackend; tape: SimulatedTape }> {
  const { gatherMs, skipWithin, ...tapeOptions } = options;
  const tape = SimulatedTape.open(path.join(dir, "tape.img"), { blockSize: 4096, ...tapeOptions });
  const backend = await TapeBackend.open(tape, {
    size,
    index: path.join(dir, "tapisk.db"),
    ...(gatherMs === undefined ? {} : { gatherMs }),
    ...(skipWithin === undefined ? {} : { skipWithin }),
  });
  return { backend, tape };
}

/** A seeded xorshift generator, so a failing order can be replayed from the seed the test prints. */
export function seededRandom(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Lines of a simulated tape's operation log. */
export function logLines(file: string): string[] {
  return fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter(Boolean) : [];
}
