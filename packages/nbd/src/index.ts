export { NbdServer, type NbdServerEvents, type NbdServerOptions } from "./server.js";
export type { NbdExport } from "./served-export.js";
