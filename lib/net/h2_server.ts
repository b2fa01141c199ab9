/**
 * A pod's HTTP/2 server (node:http2, which sends trailers), on 127.0.0.1
 * behind the front door. Each stream is told apart by its content-type
 * (grpc.md, "Transport"): `application/grpc…` goes to the gRPC service,
 * anything else to the same route table as HTTP/1.x, through a
 * Request/Response adapter, so HTTP/2 REST clients keep working.
 */
import http2 from "node:http2";
import { Readable } from "node:stream";

/** Answers one HTTP request (the pod's route table). */
export type RestHandler = (req: Request) => Promise<Response>;

/** Hands one gRPC stream to the service (it answers it, trailers included). */
export type GrpcStreamHandler = (
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
) => void;

export interface H2Server {
  readonly port: number;
  /** Sends GOAWAY on every session (no new streams) and resolves when their streams have ended. */
  drain(): Promise<void>;
  /** Ends every session still open. */
  force(): void;
}

/** Connection-level headers HTTP/2 forbids in a response (RFC 9113, 8.2.2). */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
]);

export function isGrpc(headers: http2.IncomingHttpHeaders): boolean {
  return headers["content-type"]?.startsWith("application/grpc") ?? false;
}

export function startH2Server(
  rest: RestHandler,
  grpc: GrpcStreamHandler,
): Promise<H2Server> {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
    // A session error (a reset connection) must not reach the process.
    s.on("error", () => {});
  });
  server.on("stream", (stream: http2.ServerHttp2Stream, headers) => {
    stream.on("error", () => {});
    if (isGrpc(headers)) grpc(stream, headers);
    else answerRest(rest, stream, headers);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      const port = (server.address() as { port: number }).port;
      resolve({
        port,
        drain: async () => {
          await Promise.all(
            [...sessions].map((s) =>
              new Promise<void>((done) => s.closed ? done() : s.close(() => done()))
            ),
          );
          // Only now: closing node:http2's server may end sessions still open.
          server.close();
        },
        force: () => {
          for (const s of sessions) s.destroy();
          server.close();
        },
      });
    });
  });
}

/** An HTTP/2 request through the route table, its Response written back on the stream. */
async function answerRest(
  handler: RestHandler,
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
): Promise<void> {
  const method = String(headers[":method"] ?? "GET");
  const h = new Headers();
  for (const [k, v] of Object.entries(headers)) {
    if (k.startsWith(":") || v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) h.append(k, one);
  }
  const authority = String(headers[":authority"] ?? h.get("host") ?? "localhost");
  if (!h.has("host")) h.set("host", authority);
  const gone = new AbortController();
  stream.once("close", () => gone.abort());
  const hasBody = method !== "GET" && method !== "HEAD" && !stream.readableEnded;
  let res: Response;
  try {
    const req = new Request(`http://${authority}${headers[":path"] ?? "/"}`, {
      method,
      headers: h,
      body: hasBody ? Readable.toWeb(stream) as ReadableStream<Uint8Array> : undefined,
      signal: gone.signal,
      // @ts-ignore: a streamed request body (Deno and the fetch standard's RequestInit.duplex)
      duplex: "half",
    });
    res = await handler(req);
  } catch {
    // A request the Request constructor refuses (a bad path or header).
    res = new Response(null, { status: 400 });
  }
  if (stream.destroyed || stream.closed) {
    await res.body?.cancel().catch(() => {});
    return;
  }
  const out: http2.OutgoingHttpHeaders = { ":status": res.status };
  res.headers.forEach((v, k) => {
    if (!HOP_BY_HOP.has(k)) out[k] = v;
  });
  if (!res.body) {
    stream.respond(out, { endStream: true });
    return;
  }
  stream.respond(out);
  const reader = res.body.getReader();
  stream.once("close", () => reader.cancel().catch(() => {}));
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!stream.write(value)) {
        await new Promise<void>((r) => {
          stream.once("drain", r);
          stream.once("close", r);
        });
      }
      if (stream.destroyed) return;
    }
    stream.end();
  } catch {
    stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  }
}
