import type { Backend } from "@r3map/core";
import type { NbdHandOff } from "@r3map/native";

/**
 * A connection the remote hands over to a device's native code (an NBD
 * client not using TLS: `NbdClient.handOffConnection`), if it can. Any other
 * remote, or a failure to connect, gives undefined: the device then leaves
 * everything to the engine, which reports what is wrong.
 */
export async function handOff(remote: Backend): Promise<NbdHandOff | undefined> {
  const handsOff = remote as Backend & { handOffConnection?: () => Promise<NbdHandOff | undefined> };
  if (typeof handsOff.handOffConnection !== "function") return undefined;
  try {
    return await handsOff.handOffConnection();
  } catch {
    return undefined;
  }
}
