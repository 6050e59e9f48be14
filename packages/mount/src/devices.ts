import type { DeviceBuilder, Frontend } from "./device.js";
import { fileDevice } from "./file-device.js";
import { pathDevice } from "./path-device.js";
import { sliceDevice } from "./slice-device.js";

/**
 * The device each frontend gets on this kernel. A new device is one file
 * implementing `Device` with a `DeviceBuilder`, and one line here (where the
 * kernel has NBD, `path` could pick a `/dev/nbdN` device instead).
 */
export const devices: Readonly<Record<Frontend, () => DeviceBuilder>> = {
  file: fileDevice,
  path: pathDevice,
  slice: sliceDevice,
};
