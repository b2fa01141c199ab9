/**
 * A pod's gRPC service: @grpc/grpc-js with the engine service and
 * reflection, answering streams that an HTTP/2 server hands it (the front
 * door's, lib/net/h2_server.ts) and, with --grpc-port, a listener of its own.
 *
 * grpc-js has no public way to serve a stream of someone else's HTTP/2
 * server (its connection injector takes whole connections, and would refuse
 * HTTP/2 REST requests on them with 415), so a stream goes to the server's
 * own per-stream entry point, `_streamHandler`, with no extra interceptors.
 * The version is pinned in deno.json and tests/grpc_test.ts exercises
 * every RPC through it; `grpcService` fails at once if the method is gone.
 */
import * as grpc from "@grpc/grpc-js";
import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import type { Simulator } from "../../simulator.ts";
import { engineService } from "./codec.ts";
import { engineHandlers } from "./engine.ts";
import { addReflection } from "./reflection.ts";

type StreamEntry = (
  interceptors: unknown[],
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
) => void;

export interface GrpcService {
  readonly server: grpc.Server;
  /** Answers one gRPC stream. */
  handle(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void;
  /** From now on, new calls end Unavailable at once. */
  refuseNew(): void;
}

export function grpcService(sim: Simulator): GrpcService {
  const server = new grpc.Server();
  server.addService(engineService(), engineHandlers(sim));
  addReflection(server);
  const entry = (server as unknown as { _streamHandler?: StreamEntry })._streamHandler;
  if (typeof entry !== "function") {
    throw new Error("@grpc/grpc-js has no per-stream entry point (_streamHandler) in this version");
  }
  let refusing = false;
  return {
    server,
    handle(stream, headers) {
      if (refusing) {
        // Trailers-only: the status in the response headers.
        stream.respond({
          ":status": 200,
          "content-type": "application/grpc+proto",
          "grpc-status": String(grpc.status.UNAVAILABLE),
          "grpc-message": "server is shutting down",
        }, { endStream: true });
        return;
      }
      entry.call(server, [], stream, headers);
    },
    refuseNew() {
      refusing = true;
    },
  };
}
