import * as os from "node:os";
import * as path from "node:path";

/**
 * Where `r3map mount` saves writes the remote cannot take at close, unless
 * told (--recovery-file): the user's state directory (XDG), one file per
 * mount, named by time and process so that none replaces another.
 */
export function defaultRecoveryFile(): string {
  const state = process.env.XDG_STATE_HOME || path.join(os.homedir(), ".local", "state");
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  return path.join(state, "r3map", "recovery", `${stamp}-${process.pid}.r3rec`);
}
