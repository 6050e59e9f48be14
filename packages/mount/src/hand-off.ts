import type { Backend, NbdHandOff } from "@r3map/core";

/**
 * A connection the remote hands over to a device's native code, if it can
 * (`Backend.handOffConnection`: an NBD client not using TLS, and no filter
 * in between). A failure to connect gives undefined too: the device then
 * leaves everything to the engine, which reports what is wrong.
 */
export async function handOff(remote: Backend): Promise<NbdHandOff | undefined> {
  try {
    return await remote.handOffConnection?.();
  } catch {
    return undefined;
  }
}
