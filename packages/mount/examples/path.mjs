// A managed block device: `node packages/mount/examples/path.mjs` (as root, after pnpm build).
// On this kernel the device is a loop device over the FUSE file; mkfs, mount and swapon accept it.
import { execFileSync } from "node:child_process";
import { mountPath } from "@r3map/mount";

const device = await mountPath({ remote: "memory:?size=64MiB", managed: {} });
console.log(device.path); // /dev/loopN
execFileSync("mkfs.ext4", ["-F", "-q", device.path]);
console.log(execFileSync("blkid", [device.path], { encoding: "utf8" }).trim());
await device.close();
