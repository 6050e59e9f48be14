import { NbdClient } from "./client.js";
import { registerNbdSchemes } from "./uri.js";

export { connectNbd, listNbdExports, NbdClient } from "./client.js";
export type { ExportInfo } from "./client-handshake.js";
export type { NbdClientOptions } from "./client-options.js";
export * as nbdProtocol from "./protocol.js";
export type { NbdExport } from "./served-export.js";
export { NbdServer, type NbdServerEvents, type NbdServerOptions } from "./server.js";
export { parseNbdUri } from "./uri.js";

registerNbdSchemes((options) => NbdClient.connect(options));
