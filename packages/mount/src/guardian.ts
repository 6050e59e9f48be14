import { type ChildProcess, spawn } from "node:child_process";
import { escapeMountField, ownerSource } from "./mount-table.js";

/**
 * The guardian's script (POSIX sh: a few hundred KiB, no Node). It reads its
 * stdin — a pipe whose other end only the mount's process holds — until
 * "release" (a clean close: nothing to do) or end of file: the process died
 * without closing (kill -9, a crash, an exit that skipped the close). Then
 * it detaches the FUSE mount if it is still the one the process made — at
 * `$1` as mountinfo spells it, with the process as its source `$2` — and
 * removes the temporary mount point `$4` the process created. A loop device
 * over the file goes by itself (autoclear) once the dead process's handle is
 * closed. It ignores the signals a terminal or a process group gets, so a
 * Ctrl-C meant for the mount does not end it first.
 */
const SCRIPT = `
trap '' INT HUP TERM QUIT
while IFS= read -r line; do
  [ "$line" = release ] && exit 0
done
while read -r _ _ _ _ point rest; do
  [ "$point" = "$1" ] || continue
  case " $rest " in *" - "*" $2 "*) umount -l -- "$3" 2>/dev/null ;; esac
done < /proc/self/mountinfo
[ -n "$4" ] && rmdir -- "$4" 2>/dev/null
exit 0
`;

/**
 * A small child process that outlives the mount's process, so that a mount
 * whose process is killed (kill -9) or crashes is cleaned up within moments:
 * its FUSE mount lazily unmounted, its temporary mount point removed. Start
 * it before mounting (a process killed while mounting is covered too) and
 * `release` it after a clean close. It never keeps the process alive.
 */
export class Guardian {
  private constructor(private readonly child: ChildProcess) {}

  /**
   * Guards the FUSE mount this process is about to make at `mountPoint`
   * (canonical: as the kernel will list it), removing `removeDirectory`
   * (the mount point, when this process created it) after a death.
   */
  static watch(mountPoint: string, removeDirectory?: string): Guardian {
    const child = spawn(
      "/bin/sh",
      [
        "-c",
        SCRIPT,
        "r3map-guardian",
        escapeMountField(mountPoint),
        ownerSource(),
        mountPoint,
        removeDirectory ?? "",
      ],
      // Its own session: a terminal's Ctrl-C or a hang-up reaches the mount, not the guardian.
      { stdio: ["pipe", "ignore", "ignore"], detached: true },
    );
    // A guardian that could not start (no /bin/sh) leaves the mount as it was without one.
    child.on("error", () => {});
    child.stdin?.on("error", () => {});
    child.unref();
    (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    return new Guardian(child);
  }

  /**
   * The mount was closed cleanly: the guardian exits without touching
   * anything. Resolves once the word is out (a worker ending right after
   * must not cut it off). Idempotent.
   */
  release(): Promise<void> {
    const stdin = this.child.stdin;
    if (!stdin || stdin.writableEnded) return Promise.resolve();
    return new Promise((resolve) => {
      stdin.once("error", () => resolve());
      stdin.end("release\n", () => resolve());
    });
  }

  /** The guardian's process id (for tests). */
  get pid(): number | undefined {
    return this.child.pid;
  }
}
