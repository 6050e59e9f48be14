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
