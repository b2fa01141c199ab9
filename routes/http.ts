/**
 * HTTP plumbing shared by the handlers: JSON and error responses, reading a
 * request body under the size limit, and the per-request context.
 */
import { anthropicErrorBody } from "../lib/api/anthropic/errors.ts";
import { ApiError, errorBody } from "../lib/errors.ts";
import type { Simulator } from "../lib/simulator.ts";

export interface RequestContext {
  sim: Simulator;
  /** The port the request arrived on (per DP rank). */
  port: number;
  url: URL;
  /** X-Request-Id or a generated one. */
  requestId: string;
  /**
   * performance.now() when the request's head reached the router: its
   * arrival, from which its first token is timed.
   */
  arrival: number;
  /**
   * A signal that aborts when the client disconnects. Ask for it only when
   * an answer has to wait: it costs a runtime op and, for requests Deno
   * cannot watch itself, a TCP-table watch (routes/disconnect.ts).
   */
  clientGone(): AbortSignal;
  /** A body that may take a while to arrive is being read (the body timeout applies). */
  uploading(): void;
  /** The request body has been read, or will not be waited for. */
  bodyRead(): void;
  /** Close the connection once the answer is out (an upload we will not read). */
  closeConnection(): void;
  /**
   * An answer that goes on after the handler returns (a stream that waits
   * or is paced) keeps its connection registered as busy until the returned
   * function is called.
   */
  holdConnection(): () => void;
  /**
   * A long answer can be ended by the gRPC Abort RPC naming this request's
   * id: registers `abort` and returns the function that forgets it.
   */
  abortable(abort: () => void): () => void;
}

export type Handler = (req: Request, ctx: RequestContext) => Response | Promise<Response>;

const JSON_HEADERS = { "content-type": "application/json" };

export function json(body: unknown, status = 200): Response {
  return jsonText(JSON.stringify(body), status);
}

/** A response whose body is already JSON text. */
export function jsonText(body: string, status = 200): Response {
  return new Response(body, { status, headers: JSON_HEADERS });
}

/**
 * The API family whose conventions a route follows: its error body and the
 * headers that may carry the API key.
 */
export type Family = "openai" | "anthropic";

export function errorResponse(e: ApiError, family: Family = "openai"): Response {
  const res = json(family === "anthropic" ? anthropicErrorBody(e) : errorBody(e), e.status);
  // The rest of an over-long upload is never wanted: the connection closes
  // (a chunked one is also marked for the reaper, see readJson).
  if (e instanceof BodyTooLarge) res.headers.set("connection", "close");
  return res;
}

/** A body over the size limit (413). */
class BodyTooLarge extends ApiError {
  constructor(limit: number) {
    super(413, `Request body too large: the limit is ${limit / 1048576} MB.`);
  }
}

/**
 * The slot where a Request keeps the runtime's record of it (Deno's
 * private `request` symbol), found once on a Request made here.
 */
const RECORD = Object.getOwnPropertySymbols(new Request("http://localhost/"))
  .find((s) => s.description === "request");

interface RequestRecord {
  header?: (name: string) => string | null;
  /** The whole body as text once it has all arrived, else null (once). */
  consumeTextBody?: () => string | null;
}

function recordOf(req: Request): RequestRecord | undefined {
  return RECORD && (req as unknown as Record<symbol, RequestRecord | undefined>)[RECORD];
}

/**
 * A request header by its lower-case name, as `req.headers.get` gives it.
 * A request from Deno.serve is asked through its runtime record: one op
 * (~0.1 µs), where `req.headers.get` costs ~0.4 µs a call in WebIDL checks
 * and a generation request reads six headers. Any other Request (HTTP/2
 * adapter, tests), or a runtime whose record has no `header`, goes through
 * `req.headers`.
 */
export function header(req: Request, name: string): string | null {
  const record = recordOf(req);
  if (typeof record?.header !== "function") return req.headers.get(name);
  try {
    return record.header(name);
  } catch {
    // A closed request: `req.headers` holds a copy if it was ever read.
    return req.headers.get(name);
  }
}

export function text(body: string, status = 200): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

/**
 * A body larger than this may take a while on a slow link: the body timeout
 * watches it. Smaller ones arrive with their head, or stall and fall under
 * the idle timeout.
 */
const LARGE_BODY = 64 * 1024;

/**
 * Reads and parses a JSON body, refusing bodies over
 * --max-request-body-size-mb (413). On every generation request's path, so
 * a body the runtime already holds whole is parsed at once, with no promise
 * (a zero-latency answer then never waits on a microtask turn). Returns the
 * parsed value, or a promise of it for a body still arriving (`await` takes
 * either).
 */
export function readJson(req: Request, ctx: RequestContext): unknown {
  const limit = ctx.sim.config["max-request-body-size-mb"] * 1048576;
  const declared = header(req, "content-length");
  if (declared === null || Number(declared) > LARGE_BODY) ctx.uploading();
  if (declared === null) return readChunked(req, ctx, limit);
  if (Number(declared) > limit) {
    ctx.bodyRead();
    throw new BodyTooLarge(limit);
  }
  // The runtime holds the body to its declared length; a Deno.serve request
  // hands over its text when all of it has arrived (what req.json() does
  // first, without the promise).
  let text: string | null | undefined;
  try {
    text = recordOf(req)?.consumeTextBody?.();
  } catch {
    text = undefined; // req.json() says what went wrong
  }
  if (typeof text !== "string") return readWhole(req, ctx);
  ctx.bodyRead();
  try {
    return JSON.parse(text);
  } catch (e) {
    throw invalidJson(e as Error);
  }
}

/** A body of declared length that has not all arrived yet. */
async function readWhole(req: Request, ctx: RequestContext): Promise<unknown> {
  try {
    return await req.json();
  } catch (e) {
    if (e instanceof SyntaxError) throw invalidJson(e);
    throw unreadable(e);
  } finally {
    ctx.bodyRead();
  }
}

/** A chunked body, counted as it is read so a huge upload is cut off early. */
async function readChunked(req: Request, ctx: RequestContext, limit: number): Promise<unknown> {
  const parts: Uint8Array[] = [];
  let total = 0;
  try {
    if (req.body) {
      for await (const part of req.body) {
        total += part.byteLength;
        if (total > limit) {
          // The runtime would read and discard a chunked rest for as long as
          // the client sends: the reaper shuts the connection after the 413.
          ctx.closeConnection();
          throw new BodyTooLarge(limit);
        }
        parts.push(part);
      }
    }
  } catch (e) {
    throw unreadable(e);
  } finally {
    ctx.bodyRead();
  }
  const all = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.byteLength;
  }
  const raw = new TextDecoder().decode(all);
  try {
    return JSON.parse(raw);
  } catch (e) {
    throw invalidJson(e as Error);
  }
}

function invalidJson(e: Error): ApiError {
  return new ApiError(400, `Invalid JSON in request body: ${e.message}`);
}

/**
 * Why the body could not be read: our own refusal as it is, else the client
 * broke the upload off (a client fault: 400, never a server error). A client
 * that left goes on as the AbortError it is.
 */
function unreadable(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof DOMException && e.name === "AbortError") throw e;
  return new ApiError(400, `Could not read the request body: ${(e as Error)?.message ?? e}`);
}
