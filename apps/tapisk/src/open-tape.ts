import { R3mapError } from "@r3map/core";
import { DriveTape } from "./drive-tape.js";
import { SimulatedTape, type SimulatedTapeOptions } from "./simulated-tape.js";
import type { Tape } from "./tape.js";

/**
 * Opens what `--drive` names: a tape device (`/dev/nst0`), or a simulated
 * tape in a file, `sim:/path/tape.img` with optional parameters
 * `?block-size=4096&seek-ms=0&seek-ms-per-block=0&record-ms=0&log=/path/ops.log` (block size 0
 * simulates a drive in variable-block mode).
 */
export async function openTape(drive: string, options: { readOnly?: boolean } = {}): Promise<Tape> {
  if (!drive.startsWith("sim:")) return DriveTape.open(drive, options);
  const simulated = parseSimulatedDrive(drive);
  return SimulatedTape.open(simulated.path, { ...simulated.options, ...options });
}

/** `sim:/path?block-size=…&seek-ms=…&record-ms=…&log=…` → the file and its options. */
export function parseSimulatedDrive(drive: string): { path: string; options: SimulatedTapeOptions } {
  const [location = "", query = ""] = drive.slice("sim:".length).split("?", 2);
  const path = location.replace(/^\/\/(?=\/)/, "");
  if (!path.startsWith("/")) {
    throw new R3mapError(
      "ERR_INVALID_ARGUMENT",
      `a simulated drive needs an absolute path: sim:/var/tmp/tape.img, got "${drive}"`,
    );
  }
  const params = new URLSearchParams(query);
  const number = (name: string, fallback: number): number => {
    const text = params.get(name);
    if (text === null) return fallback;
    const value = Number(text);
    if (!(value >= 0) || text.trim() === "") {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `${name} in "${drive}" must be a non-negative number, got "${text}"`,
      );
    }
    return value;
  };
  for (const name of params.keys()) {
    if (!["block-size", "seek-ms", "seek-ms-per-block", "record-ms", "log"].includes(name)) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `unknown parameter "${name}" in "${drive}" (known: block-size, seek-ms, seek-ms-per-block, record-ms, log)`,
      );
    }
  }
  const log = params.get("log");
  return {
    path,
    options: {
      blockSize: number("block-size", 4096),
      seekMs: number("seek-ms", 0),
      seekMsPerBlock: number("seek-ms-per-block", 0),
      recordMs: number("record-ms", 0),
      ...(log ? { log } : {}),
    },
  };
}
