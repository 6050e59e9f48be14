import { createRequire } from "node:module";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { R3mapError } from "@r3map/core";

/** Imports the packages that register a description's URI schemes (default: `@r3map/nbd`). */
export async function importSchemePackages(schemes: readonly string[] | undefined): Promise<void> {
  for (const scheme of schemes ?? ["@r3map/nbd"]) await importSchemePackage(scheme);
}

/**
 * Imports a package that registers backend URI schemes: a package name, or a
 * resolved file URL (`import.meta.resolve("@r3map/backend-redis")`). A name
 * is tried from this package, then from the application's main script and its
 * working directory, so that a package the application installed is found
 * under pnpm's strict layout.
 */
async function importSchemePackage(specifier: string): Promise<void> {
  try {
    await import(specifier);
    return;
  } catch (error) {
    const bases = [process.argv[1] ? path.dirname(path.resolve(process.argv[1])) : undefined, process.cwd()];
    for (const base of bases) {
      if (!base) continue;
      let resolved: string;
      try {
        resolved = createRequire(path.join(base, "noop.js")).resolve(specifier);
      } catch {
        continue;
      }
      await import(pathToFileURL(resolved).href);
      return;
    }
    throw new R3mapError(
      "ERR_UNKNOWN_SCHEME",
      `cannot load the scheme package "${specifier}": install it in your application, or pass import.meta.resolve("${specifier}")`,
      { cause: error },
    );
  }
}
