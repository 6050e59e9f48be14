import { R3mapError } from "@r3map/core";
import { errorLine } from "./error-line.js";
import { exitStatusOf } from "./exit-status.js";
import { ProgressDisplay, type ProgressState } from "./progress.js";
import { RateMeter } from "./rate.js";

/**
 * The NDJSON events a long-running command writes to stdout with `--json`,
 * one object per line. `phase` (a stage of the work begins) and `downtime`
 * (how long the application had to stop) are for migrations.
 */
export type EventName = "start" | "phase" | "progress" | "downtime" | "warning" | "error" | "done";

export interface OutputOptions {
  /** The program's name, which starts every message line (`r3map: …`). */
  program: string;
  /** The subcommand, written into every event (`"command": "mount"`). */
  command?: string;
  /** Write NDJSON events to stdout. */
  json?: boolean;
  /** Add stack traces to error messages. */
  debug?: boolean;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** Passed to the progress display (terminal or not, plain-line interval). */
  progress?: { tty?: boolean; plainIntervalMs?: number };
  /** The least time between two progress events (default 1 s); the one reaching the total always goes out. */
  progressEventIntervalMs?: number;
  now?: () => number;
}

/** One step of a piece of work in bytes, with extra fields for the event. */
export interface ProgressSample {
  label: string;
  done: number;
  total: number;
  fields?: Record<string, unknown>;
}

/**
 * Everything a command tells the outside world. People read stderr: message
 * lines and a progress display. Programs read stdout with `--json`: one JSON
 * event per line — `start`, `progress`, `warning`, `error`, and `done` last,
 * carrying the exit status. Every event has `event`, `command` and `time`.
 */
export class Output {
  readonly json: boolean;
  readonly debug: boolean;
  readonly #program: string;
  readonly #command: string | undefined;
  readonly #stdout: NodeJS.WritableStream;
  readonly #display: ProgressDisplay;
  readonly #meters = new Map<string, RateMeter>();
  readonly #lastEvent = new Map<string, number>();
  /** Labels whose event at the total went out: that one is never held back by the interval. */
  readonly #reached = new Set<string>();
  readonly #eventIntervalMs: number;
  readonly #now: () => number;
  #done = false;

  constructor(options: OutputOptions) {
    this.#program = options.program;
    this.#command = options.command;
    this.json = options.json === true;
    this.debug = options.debug === true;
    this.#stdout = options.stdout ?? process.stdout;
    // A reader that went away (`| head`) must not turn into an error of ours.
    this.#stdout.on("error", () => {});
    this.#now = options.now ?? Date.now;
    this.#display = new ProgressDisplay({
      stream: options.stderr ?? process.stderr,
      ...options.progress,
      now: this.#now,
    });
    this.#eventIntervalMs = options.progressEventIntervalMs ?? 1000;
  }

  /** A line for people, on stderr. */
  say(line: string): void {
    this.#display.log(line);
  }

  /** Writes one event (only with `--json`). */
  event(name: EventName, fields: Record<string, unknown> = {}): void {
    if (!this.json) return;
    const event = {
      event: name,
      command: this.#command,
      time: new Date(this.#now()).toISOString(),
      ...fields,
    };
    this.#stdout.write(`${JSON.stringify(event)}\n`);
  }

  /** The work has started: `fields` describe it (paths, endpoints, sizes); `human` is the line for people. */
  start(fields: Record<string, unknown>, human?: string): void {
    if (human !== undefined) this.say(human);
    this.event("start", fields);
  }

  /** Something is wrong but the work goes on. */
  warning(message: string, fields: Record<string, unknown> = {}): void {
    this.say(`${this.#program}: warning: ${message}`);
    this.event("warning", { message, ...fields });
  }

  /**
   * Reports an error in one line (with stack traces under `--debug`), as an
   * `error` event too, and returns the exit status it calls for.
   */
  error(error: unknown, context?: string): number {
    const status = exitStatusOf(error);
    const line = errorLine(error, { debug: this.debug });
    this.say(`${this.#program}: ${context ? `${context}: ` : ""}${line}`);
    this.event("error", {
      code: error instanceof R3mapError ? error.code : undefined,
      message: `${context ? `${context}: ` : ""}${error instanceof Error ? error.message : String(error)}`,
      exitStatus: status,
    });
    return status;
  }

  /** Shows progress (bar or plain lines, with rate and ETA) and emits a `progress` event, at most once a second. */
  progress(sample: ProgressSample): void {
    let meter = this.#meters.get(sample.label);
    if (!meter) {
      meter = new RateMeter(5000, this.#now);
      this.#meters.set(sample.label, meter);
    }
    meter.sample(sample.done);
    const state: ProgressState = {
      label: sample.label,
      done: sample.done,
      total: sample.total,
      rate: meter.perSecond,
      eta: meter.secondsLeft(sample.total - sample.done),
    };
    this.#display.update(state);
    const now = this.#now();
    const reached = sample.done >= sample.total && !this.#reached.has(sample.label);
    if (
      !reached &&
      now - (this.#lastEvent.get(sample.label) ?? Number.NEGATIVE_INFINITY) < this.#eventIntervalMs
    )
      return;
    if (reached) this.#reached.add(sample.label);
    this.#lastEvent.set(sample.label, now);
    this.event("progress", {
      label: state.label,
      done: state.done,
      total: state.total,
      rate: Math.round(state.rate),
      eta: state.eta === undefined ? null : Math.round(state.eta * 10) / 10,
      ...sample.fields,
    });
  }

  /** The work is over: the last event, with exit status 0 and `fields`; `human` is the line for people. */
  done(fields: Record<string, unknown> = {}, human?: string): void {
    if (this.#done) return;
    this.#done = true;
    this.#display.stop();
    if (human !== undefined) this.say(human);
    this.event("done", { exitStatus: 0, ...fields });
  }

  /** Ends the process with `status`, writing the `done` event first if it was not written. */
  finish(status: number): never {
    if (!this.#done) {
      this.#done = true;
      this.#display.stop();
      this.event("done", { exitStatus: status });
    }
    process.exit(status);
  }
}
