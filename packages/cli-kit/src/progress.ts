import { formatBytes } from "@r3map/core";
import cliProgress from "cli-progress";
import { formatDuration } from "./duration.js";

/** One state of a long piece of work, in bytes. */
export interface ProgressState {
  /** What is progressing, e.g. "pulled" or "verified". */
  label: string;
  done: number;
  total: number;
  /** Bytes per second (0 when unknown). */
  rate: number;
  /** Seconds left; undefined when unknown. */
  eta: number | undefined;
}

export interface ProgressDisplayOptions {
  /** Where to draw (default process.stderr). */
  stream?: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Draw a bar (default: when the stream is a terminal); otherwise print plain lines. */
  tty?: boolean;
  /** Without a terminal, the least time between two plain lines (default 5 s); the last one always prints. */
  plainIntervalMs?: number;
  now?: () => number;
}

/** `pulled 12.0 MiB / 64.0 MiB (18%), 3.20 MiB/s, ETA 15s` */
export function describeProgress(state: ProgressState): string {
  const percent = state.total > 0 ? Math.floor((state.done / state.total) * 100) : 100;
  const speed = state.rate > 0 ? `, ${formatBytes(state.rate)}/s` : "";
  const eta = state.done < state.total && state.eta !== undefined ? `, ETA ${formatDuration(state.eta)}` : "";
  return `${state.label} ${formatBytes(state.done)} / ${formatBytes(state.total)} (${percent}%)${speed}${eta}`;
}

/**
 * Shows progress to a person: a bar with rate and ETA on a terminal (drawn by
 * cli-progress), plain periodic lines anywhere else (a log file, a pipe).
 * Other output goes through `log` so that it never tears the bar.
 */
export class ProgressDisplay {
  readonly #stream: NodeJS.WritableStream;
  readonly #tty: boolean;
  readonly #plainIntervalMs: number;
  readonly #now: () => number;
  #bars: cliProgress.MultiBar | undefined;
  #bar: cliProgress.SingleBar | undefined;
  #label: string | undefined;
  #lastPlain = Number.NEGATIVE_INFINITY;
  #finished = false;

  constructor(options: ProgressDisplayOptions = {}) {
    this.#stream = options.stream ?? process.stderr;
    this.#tty = options.tty ?? (this.#stream as NodeJS.WriteStream).isTTY === true;
    this.#plainIntervalMs = options.plainIntervalMs ?? 5000;
    this.#now = options.now ?? Date.now;
  }

  update(state: ProgressState): void {
    if (state.label !== this.#label) {
      this.#end();
      this.#label = state.label;
      this.#finished = false;
    }
    if (this.#finished) return;
    const complete = state.done >= state.total;
    if (this.#tty) this.#draw(state);
    else if (complete || this.#now() - this.#lastPlain >= this.#plainIntervalMs) {
      this.#lastPlain = this.#now();
      this.#stream.write(`${describeProgress(state)}\n`);
    }
    if (complete) {
      this.#finished = true;
      this.#end();
    }
  }

  /** Prints a line above the bar (or plainly when there is none). */
  log(line: string): void {
    if (this.#bars) this.#bars.log(`${line}\n`);
    else this.#stream.write(`${line}\n`);
  }

  /** Leaves the bar as it is and moves on to a new line. */
  stop(): void {
    this.#end();
  }

  #draw(state: ProgressState): void {
    const payload = {
      label: state.label,
      amount: `${formatBytes(state.done)} / ${formatBytes(state.total)}`,
      speed: state.rate > 0 ? `${formatBytes(state.rate)}/s` : "",
      left: state.eta === undefined ? "" : `ETA ${formatDuration(state.eta)}`,
    };
    if (!this.#bars) {
      this.#bars = new cliProgress.MultiBar(
        {
          stream: this.#stream as NodeJS.WritableStream & NodeJS.WriteStream,
          format: "{label} {bar} {percentage}% | {amount} | {speed} | {left}",
          hideCursor: true,
          autopadding: true,
          fps: 5,
        },
        cliProgress.Presets.shades_classic,
      );
      this.#bar = this.#bars.create(state.total, state.done, payload);
    }
    this.#bar!.setTotal(state.total);
    this.#bar!.update(Math.min(state.done, state.total), payload);
  }

  #end(): void {
    this.#bars?.stop();
    this.#bars = undefined;
    this.#bar = undefined;
  }
}
