// A managed slice: the remote as a Buffer, faulted in chunk by chunk: `node packages/mount/examples/slice.mjs`
// (as root, after pnpm build). The engine runs on a worker thread, so this thread may touch the memory freely.
import { mountSlice } from "@r3map/mount";

const slice = await mountSlice({ remote: "memory:?size=64MiB", managed: { pull: { workers: 8 } } });
slice.buffer.write("hello from a slice", 1 << 20);
console.log(slice.buffer.toString("utf8", 1 << 20, (1 << 20) + 18), slice.buffer.length);
await slice.sync(); // written pages found by write-protect and pushed
await slice.close();
