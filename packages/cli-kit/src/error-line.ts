import { R3mapError } from "@r3map/core";
import { CommanderError } from "commander";
import { hasErrno } from "./exit-status.js";

/**
 * One line that tells the user what went wrong: the message and, for typed
 * errors, the stable code (`… (ERR_REMOTE_UNREACHABLE)`). An error r3map did
 * not expect says so and points at --debug. With `debug`, the stack traces of
 * the error and its causes follow on further lines.
 */
export function errorLine(error: unknown, options: { debug?: boolean } = {}): string {
  const line = oneLine(summary(error));
  return options.debug ? `${line}\n${stacks(error)}` : line;
}

function summary(error: unknown): string {
  if (error instanceof R3mapError) return `${error.message} (${error.code})`;
  // Commander prefixes "error: " and puts its suggestion on a line of its own.
  if (error instanceof CommanderError) return error.message.replace(/^error:\s*/, "");
  if (hasErrno(error)) return error.message;
  const message = error instanceof Error ? error.message : String(error);
  return `unexpected error: ${message} (a bug; --debug prints where it happened)`;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}

function stacks(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error, depth = 0; e !== undefined && depth < 8; depth++) {
    parts.push(depth === 0 ? stackOf(e) : `caused by: ${stackOf(e)}`);
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join("\n");
}

function stackOf(error: unknown): string {
  return error instanceof Error ? (error.stack ?? `${error.name}: ${error.message}`) : String(error);
}
