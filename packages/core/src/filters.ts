import type { Backend } from "./backend.js";
import { R3mapError } from "./errors.js";

/**
 * Makes a stage over `inner` from plain options — a filter, in nbdkit's
 * sense. It must return a Backend that forwards what it does not change
 * (extend `Stage`, which passes every call and capability through).
 */
export type FilterFactory = (
  inner: Backend,
  options: Readonly<Record<string, unknown>>,
) => Backend | Promise<Backend>;

/** A filter as plain data, so that a mount described on one thread can build it on another. */
export interface FilterDescription {
  /** The name a package registered with `registerFilter`. */
  name: string;
  options?: Record<string, unknown>;
}

const factories = new Map<string, FilterFactory>();

/**
 * Makes a filter placeable by name (e.g. in a mount's `filters`). Packages
 * register their filters when imported, as they register URI schemes;
 * registering a name again replaces the factory.
 */
export function registerFilter(name: string, factory: FilterFactory): void {
  factories.set(name, factory);
}

export function registeredFilters(): string[] {
  return [...factories.keys()].sort();
}

/**
 * Stacks the described filters on `backend`, the first one nearest to it.
 * If a factory throws, the filters already made are left to the caller's
 * close of the backend (a filter's `close` closes what it wraps).
 */
export async function applyFilters(
  backend: Backend,
  filters: readonly FilterDescription[] = [],
): Promise<Backend> {
  let stacked = backend;
  for (const filter of filters) {
    const factory = factories.get(filter.name);
    if (!factory) {
      throw new R3mapError(
        "ERR_INVALID_ARGUMENT",
        `no filter named "${filter.name}"; known: ${registeredFilters().join(", ") || "none"} (import the package that registers it)`,
      );
    }
    stacked = await factory(stacked, filter.options ?? {});
  }
  return stacked;
}
