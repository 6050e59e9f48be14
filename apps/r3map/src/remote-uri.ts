import type { Output } from "@r3map/cli-kit";

/**
 * Gives a Connect remote (`r3map+h2c:`, `r3map+https:`) the first token from
 * --token-file or R3MAP_TOKEN when its URI carries none, so the secret never
 * has to appear in the command line (and in `ps`). Other URIs are unchanged.
 */
export function withToken(uri: string, tokens: readonly string[]): string {
  if (!/^r3map\+(h2c|https):/i.test(uri) || tokens.length === 0) return uri;
  const url = new URL(uri);
  if (url.searchParams.has("token")) return uri;
  url.searchParams.set("token", tokens[0]!);
  return url.href;
}

/** `--token` puts a secret where every user sees it (`ps`): say so. */
export function warnIfTokenVisible(tokens: readonly string[], output: Output): void {
  if (tokens.length > 0)
    output.warning("--token is visible to every user in ps; use --token-file or R3MAP_TOKEN");
}

/** A URI as it may be printed: without its `token` parameter. */
export function withoutToken(uri: string): string {
  if (!/^r3map\+(h2c|https):/i.test(uri)) return uri;
  const url = new URL(uri);
  if (!url.searchParams.has("token")) return uri;
  url.searchParams.delete("token");
  return url.href;
}
