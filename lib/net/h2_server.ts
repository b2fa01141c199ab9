/**
 * A pod's HTTP/2 server (node:http2, which sends trailers), fed its
 * connections by the front door (lib/net/front.ts). Each stream is told apart by its content-type
 * (grpc.md, "Transport"): `application/grpc…` goes to the gRPC service,
 * anything else to the same route table as HTTP/1.x, through a
 * Request/Response adapter, so HTTP/2 REST clients keep working.
 */
import http2 from "node:http2";
import { Duplex, Readable } from "node:stream";

/** Answers one HTTP request (the pod's route table). */
export type RestHandler = (req: Request) => Response | Promise<Response>;

/** Hands one gRPC stream to the service (it answers it, trailers included). */
export type GrpcStreamHandler = (
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
) => void;

export interface H2Server {
  /** Serves an HTTP/2 connection; `first` are bytes already read from it (the preface). */
  accept(conn: Deno.Conn, first: Uint8Array): void;
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

/** A pod's HTTP/2 server: it listens nowhere; the front door hands it connections. */
export function createH2Server(rest: RestHandler, grpc: GrpcStreamHandler): H2Server {
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
  return {
    accept(conn, first) {
      server.emit("connection", duplexOf(conn, first));
    },
    drain: async () => {
      await Promise.all(
        [...sessions].map((s) =>
          new Promise<void>((done) => s.closed ? done() : s.close(() => done()))
        ),
      );
    },
    force: () => {
      for (const s of sessions) s.destroy();
    },
  };
}

/** A Deno connection as the Node stream node:http2 reads and writes, `first` read again first. */
function duplexOf(conn: Deno.Conn, first: Uint8Array): Duplex {
  let reading = false;
  const d: Duplex = new Duplex({
    read() {
      if (reading) return;
      reading = true;
      (async () => {
        try {
          for (;;) {
            const buf = new Uint8Array(16 * 1024);
            const n = await conn.read(buf);
            if (n === null) {
              d.push(null);
              return;
            }
            if (!d.push(buf.subarray(0, n))) break;
          }
        } catch (e) {
          d.destroy(e as Error);
        } finally {
          reading = false;
        }
      })();
    },
    write(chunk: Uint8Array, _enc, cb) {
      (async () => {
        let off = 0;
        while (off < chunk.length) off += await conn.write(chunk.subarray(off));
      })().then(() => cb(), (e) => cb(e));
    },
    final(cb) {
      conn.closeWrite().then(() => cb(), () => cb());
    },
    destroy(err, cb) {
      try {
        conn.close();
      } catch {
        // already closed
      }
      cb(err);
    },
  });
  if (first.length > 0) d.unshift(first);
  return d;
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
