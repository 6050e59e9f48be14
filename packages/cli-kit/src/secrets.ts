import { readFileSync } from "node:fs";
import { fromSystemError } from "@r3map/core";
import { invalidValue } from "./invalid.js";

/** The environment variable a secret token may come from, out of sight of `ps`. */
export const TOKEN_ENV = "R3MAP_TOKEN";

export interface TokenSources {
  /** Tokens given on the command line (visible to every user in `ps`). */
  tokens?: readonly string[];
  /** Files with one token per line; blank lines and lines starting with # are skipped. */
  tokenFiles?: readonly string[];
  /** Where to look for `R3MAP_TOKEN` (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/**
 * Every bearer token from the command line, the token files and
 * `R3MAP_TOKEN`, in that order, without duplicates. A file that cannot be read
 * or holds no token is an `ERR_INVALID_ARGUMENT` naming it.
 */
export function readTokens(sources: TokenSources): string[] {
  const found: string[] = [...(sources.tokens ?? [])];
  for (const file of sources.tokenFiles ?? []) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (error) {
      throw invalidValue("--token-file", fromSystemError(error, `cannot read ${file}`).message);
    }
    const tokens = text
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "" && !line.startsWith("#"));
    if (tokens.length === 0) throw invalidValue("--token-file", `${file} holds no token`);
    found.push(...tokens);
  }
  const fromEnv = (sources.env ?? process.env)[TOKEN_ENV]?.trim();
  if (fromEnv) found.push(fromEnv);
  return [...new Set(found)];
}
