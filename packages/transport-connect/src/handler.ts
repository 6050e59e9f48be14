import type { IncomingMessage, ServerResponse } from "node:http";
import * as http2 from "node:http2";
import {
  ConnectError,
  createConnectRouter,
  createContextValues,
  type Interceptor,
} from "@connectrpc/connect";
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { bearerAuthInterceptor, type TokenCheck } from "./auth.js";
import { type CallLimitOptions, CallLimits, CallTicket, callTicketKey } from "./call-limits.js";
import { DEFAULT_MAX_REQUEST_BYTES, MESSAGE_OVERHEAD_BYTES } from "./limits.js";
import { RequestBody } from "./request-body.js";
import { r3mapRoutes, type ServeOptions } from "./routes.js";

export interface ConnectHandlerOptions extends ServeOptions {
  /** Bearer tokens the server accepts; without it, calls are not authenticated. */
  tokens?: TokenCheck;
  /** Protocols served (default all three). */
  protocols?: { connect?: boolean; grpc?: boolean; grpcWeb?: boolean };
  /** Extra server interceptors, run after authentication. */
  interceptors?: Interceptor[];
  /** Calls and bytes in flight; past them a call is answered RESOURCE_EXHAUSTED. */
  limits?: CallLimitOptions;
  /**
   * A call whose client stops sending its request, or stops reading an answer
   * the server must still discard the rest of a request for, is cut off
   * after this long without a byte (default 30 s).
   */
  stallTimeoutMs?: number;
}

type NodeRequest = http2.Http2ServerRequest | IncomingMessage;
type NodeResponse = http2.Http2ServerResponse | ServerResponse;

export const DEFAULT_STALL_TIMEOUT_MS = 30_000;

/**
 * The request handler, for embedding r3map's services in a server of your
 * own (`http2.createServer(handler)`); `ConnectServer` uses it.
 *
 * It is Connect's Node adapter with guards around it: calls past the limits
 * are refused with RESOURCE_EXHAUSTED before anything of them runs; request
 * bodies are checked (size, well-formed messages → INVALID_ARGUMENT) and
 * counted as they arrive (see RequestBody); and the answer to a call whose
 * request was not read to its end is sent only after the rest has been read
 * and dropped, so that the client's connection stays usable.
 */
export function createConnectHandler(
  options: ConnectHandlerOptions,
  shutdownSignal?: AbortSignal,
  limits = new CallLimits(options.limits),
): (request: NodeRequest, response: NodeResponse) => void {
  const cap = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  const stallTimeoutMs = options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
  const interceptors: Interceptor[] = [];
  if (options.tokens !== undefined) interceptors.push(bearerAuthInterceptor(options.tokens));
  interceptors.push(...(options.interceptors ?? []));
  // A message may carry one capped payload plus its framing; anything larger is refused unread.
  const readMaxBytes = cap + MESSAGE_OVERHEAD_BYTES;
  const router = createConnectRouter({
    interceptors,
    connect: options.protocols?.connect ?? true,
    grpc: options.protocols?.grpc ?? true,
    grpcWeb: options.protocols?.grpcWeb ?? true,
    readMaxBytes,
    writeMaxBytes: readMaxBytes,
    // Chunk payloads are mostly incompressible; compressing costs more CPU than it saves.
    acceptCompression: [],
  });
  r3mapRoutes(options, shutdownSignal)(router);
  const handlers = new Map(router.handlers.map((handler) => [handler.requestPath, handler]));

  return (request, response) => {
    const handler = handlers.get((request.url ?? "").split("?", 2)[0]!);
    if (!handler) {
      response.writeHead(404);
      response.end();
      return;
    }
    const stream = "stream" in request ? request.stream : undefined;
    const connection = stream?.session ?? request.socket;
    const admitted = limits.admit(connection);
    const ticket = admitted instanceof CallTicket ? admitted : undefined;
    if (ticket) (stream ?? response).once("close", () => ticket.release());
    const body = new RequestBody(request, {
      input: handler.method.input,
      readMaxBytes,
      ticket,
      ...(admitted instanceof ConnectError ? { refusal: admitted } : {}),
    });
    let sending = false;
    if (ticket) ticket.waitingOnClient = () => sending || body.waitingOnClient;
    const values = createContextValues().set(callTicketKey, ticket);
    const universal = { ...universalRequestFromNodeRequest(request, response, undefined, values), body };
    void (async () => {
      try {
        const answer = await handler(universal);
        if (!body.finished) await body.discardRest(stallTimeoutMs);
        sending = true;
        await universalResponseToNodeResponse(answer, response);
      } catch {
        // The client went away, stalled, or the answer could not be written: nobody is left to tell.
        cut(stream, response);
      } finally {
        sending = false;
      }
    })();
  };
}

function cut(stream: http2.ServerHttp2Stream | undefined, response: NodeResponse): void {
  if (stream) {
    if (!stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
  } else if (!response.destroyed) {
    response.destroy();
  }
}
