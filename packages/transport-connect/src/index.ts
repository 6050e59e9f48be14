/**
 * @r3map/transport-connect: r3map's RPC transport. Serves any Backend (and a
 * migration Seeder) over Connect, gRPC and gRPC-web with the original r3map's
 * services, and reaches one as a Backend. Importing it registers the
 * `r3map+h2c:` and `r3map+https:` backend URI schemes.
 */
import "./uri.js";

export { bearerAuthInterceptor, bearerTokenInterceptor, type TokenCheck } from "./auth.js";
export { type CallLimitOptions, DEFAULT_CALL_LIMITS, OVERLOADED_HEADER } from "./call-limits.js";
export type { CallerOptions, PerCallOptions, RetryMode } from "./caller.js";
export { ConnectBackend, type ConnectClientOptions, type RemoteInfo } from "./client.js";
export { ERROR_CODE_HEADER, fromConnectError, toConnectError } from "./errors.js";
export { type ConnectHandlerOptions, createConnectHandler } from "./handler.js";
export { DEFAULT_MAX_REQUEST_BYTES, DEFAULT_SEEDER_CHUNK_SIZE } from "./limits.js";
export * as proto from "./proto.js";
export { r3mapRoutes, type ServeOptions } from "./routes.js";
export type { Seeder } from "./seeder.js";
export { type DirtyChunks, SeederClient, type TrackReply } from "./seeder-client.js";
export { ConnectServer, type ConnectServerOptions } from "./server.js";
export type { ClientTlsOptions, Pem, ServerTlsOptions } from "./tls-options.js";
export { clientOptionsFromUri } from "./uri.js";
