import * as fs from "node:fs";
import * as path from "node:path";

/** Whether `dir` is a mount point now (from /proc, which never blocks on a dead FUSE server). */
export function isMountPoint(dir: string): boolean {
  return fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .some((line) => line.split(" ")[4] === dir);
}

/**
 * What one test opened — backends, mounts, anything with a cleanup — closed in
 * reverse order by `cleanup()`, which returns this test's mount points that
 * are still mounted (only its own: other packages' tests may run meanwhile).
 *
 * ```ts
 * const scope = new TestScope();
 * afterEach(async () => expect(await scope.cleanup()).toEqual([]));
 * const mount = scope.mount(await mountFile(description));
 * ```
 */
export class TestScope {
  readonly #cleanups: Array<() => Promise<unknown>> = [];
  readonly #mountPoints: string[] = [];

  /** Registers a cleanup step and returns `value`. */
  add<T>(value: T, cleanup: () => Promise<unknown>): T {
    this.#cleanups.push(cleanup);
    return value;
  }

  /** Registers a file or path mount; asserts it is mounted, so the check after close can fail. */
  mount<T extends { path: string; close(): Promise<void> }>(mount: T): T {
    const point = path.dirname(mount.path);
    if (!isMountPoint(point)) throw new Error(`${point} is not mounted right after mounting`);
    this.#mountPoints.push(point);
    return this.add(mount, () => mount.close());
  }

  async cleanup(): Promise<string[]> {
    for (const step of this.#cleanups.splice(0).reverse()) await step().catch(() => {});
    return this.#mountPoints.splice(0).filter(isMountPoint);
  }
}
