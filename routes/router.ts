/**
 * Dispatch: one table of (method, path) → handler. Unknown paths answer 404,
 * known paths with another method 405, both in the error shape. Routing uses
 * the request target alone: a Host header that could bend the URL the
 * runtime builds from it is refused (400). Every response gets the pod
 * headers and, when enabled, X-Request-Id.
 */
import { ApiError } from "../lib/errors.ts";
import type { Config } from "../lib/config.ts";
import type { Simulator } from "../lib/simulator.ts";
import { type ConnectionRecord, type ConnectionTable, requestDone } from "../lib/net/reaper.ts";
import { CorsPolicy } from "./cors.ts";
import type { DisconnectWatcher, Watch } from "./disconnect.ts";
import { errorResponse, type Family, type Handler, header, type RequestContext } from "./http.ts";

/**
 * Who may call a route when --api-key is set: "key" needs the key (every
 * state-changing endpoint, and everything under /v1, like vLLM); "open" never
 * does (health, readiness, version); "metrics" needs it only with
 * --metrics-require-api-key (vLLM leaves /metrics open).
 */
export type Access = "key" | "open" | "metrics";

export interface Route {
  method: "GET" | "POST";
  path: string;
  handler: Handler;
  /** Default "key": a new route is protected unless it says otherwise. */
  access?: Access;
  /** Default "openai": the error shape, and Bearer as the only key header. */
  family?: Family;
}

/**
 * A Host header the runtime can put into a URL without changing its path:
 * a registered name or IPv4 address, or a bracketed IPv6 literal, and an
 * optional port. Anything else ("x/admin?", "a b", "u@x") is a 400.
 */
const HOST = /^(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

function validHost(host: string): boolean {
  if (!HOST.test(host)) return false;
  const colon = host.lastIndexOf(":");
  // A port (after the last colon, outside any IPv6 brackets) fits in 16 bits.
  return colon < 0 || colon < host.lastIndexOf("]") || Number(host.slice(colon + 1)) <= 65535;
}

export interface PodInfo {
  podName?: string;
  podNamespace?: string;
}

/**
 * The path of an absolute URL as sent ("http://host:port/p?q" → "/p"),
 * without parsing or normalising it. A raw path that matches a route is
 * already in normal form, since the route table holds plain paths.
 */
export function rawPath(href: string): string {
  const start = href.indexOf("/", href.indexOf("//") + 2);
  if (start < 0) return "/";
  let end = href.length;
  const q = href.indexOf("?", start);
  if (q >= 0) end = q;
  const h = href.indexOf("#", start);
  if (h >= 0 && h < end) end = h;
  return href.slice(start, end);
}

export type ServeHandler = (
  req: Request,
  info?: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

/** What the listener watches its connections with (both optional). */
export interface Transport {
  /** Notices clients that hang up while an answer is pending. */
  watcher?: DisconnectWatcher;
  /** Per-connection bookkeeping for the header, body and idle timeouts. */
  connections?: ConnectionTable;
}

export function createRouter(
  sim: Simulator,
  routes: readonly Route[],
  port: number,
  pod: PodInfo,
  transport: Transport = {},
): ServeHandler {
  const { watcher, connections } = transport;
  const table = new Map<string, Map<string, Route>>();
  for (const r of routes) {
    let byMethod = table.get(r.path);
    if (!byMethod) table.set(r.path, byMethod = new Map());
    byMethod.set(r.method, r);
  }
  const podHeaders: [string, string][] = [];
  if (pod.podName) podHeaders.push(["x-inference-pod", pod.podName]);
  if (pod.podName) podHeaders.push(["x-inference-port", String(port)]);
  if (pod.podNamespace) podHeaders.push(["x-inference-namespace", pod.podNamespace]);
  const cors = new CorsPolicy(sim.config);
  // The last Host that passed the check: a client sends the same one each time.
  let goodHost = "";

  /** What every answer gets once its handler is done (after its wait, if it had one). */
  const finish = (
    res: Response,
    req: Request,
    ctx: Context | undefined,
    origin: string | null,
    byMethod: Map<string, Route> | undefined,
    route: Route | undefined,
    pathname: string,
  ): Response => {
    ctx?.release();
    for (const [k, v] of podHeaders) res.headers.set(k, v);
    if (origin !== null) cors.decorate(res, req, origin);
    if (ctx && sim.config["enable-request-id-headers"]) {
      res.headers.set("x-request-id", ctx.requestId);
    }
    if (byMethod && !route) res.headers.set("allow", [...byMethod.keys()].join(", "));
    if (sim.config["log-http"]) {
      sim.log.info("http", { method: req.method, path: pathname, status: res.status });
    }
    return res;
  };

  // Not an async function: a handler that answers at once (a zero-latency
  // completion) is answered with no promise and no microtask turn.
  return (req, info) => {
    const arrival = performance.now();
    const href = req.url;
    let pathname = "";
    let byMethod: Map<string, Route> | undefined;
    let route: Route | undefined;
    let ctx: Context | undefined;
    let out: Response | Promise<Response>;
    const origin = header(req, "origin");
    try {
      const host = header(req, "host");
      if (host !== null && host !== "" && host !== goodHost) {
        if (!validHost(host)) throw new ApiError(400, "Invalid Host header.");
        goodHost = host;
      }
      let url: URL | undefined;
      // The raw path is looked up first; only a miss pays for parsing it,
      // which also normalises the path.
      pathname = rawPath(href);
      byMethod = table.get(pathname);
      if (!byMethod) {
        url = parseUrl(href);
        pathname = url.pathname;
        byMethod = table.get(pathname);
      }
      route = byMethod?.get(req.method);
      // A browser's preflight is answered before routing and auth, as vLLM's middleware does.
      if (CorsPolicy.isPreflight(req, origin)) return cors.preflight(req, origin!);
      ctx = new Context(sim, port, req, href, url, arrival, watcher, info, connections);
      checkApiKey(req, pathname, route, sim.config);
      if (!byMethod) throw new ApiError(404, `Not Found: ${pathname}`);
      if (!route) throw new ApiError(405, `Method Not Allowed: ${req.method} ${pathname}`);
      out = route.handler(req, ctx);
    } catch (e) {
      out = failure(e, req, pathname, sim, route?.family);
    }
    if (!(out instanceof Promise)) return finish(out, req, ctx, origin, byMethod, route, pathname);
    const c = ctx, m = byMethod, r = route, p = pathname;
    return out.then(
      (res) => finish(res, req, c, origin, m, r, p),
      (e) => finish(failure(e, req, p, sim, r?.family), req, c, origin, m, r, p),
    );
  };
}

function parseUrl(href: string): URL {
  try {
    return new URL(href);
  } catch {
    throw new ApiError(400, "Invalid request target.");
  }
}

/**
 * The answer for a handler that threw. Client faults (bad input, a client
 * that left) are logged at debug level: they are not the server's errors.
 */
function failure(
  e: unknown,
  req: Request,
  pathname: string,
  sim: Simulator,
  family: Family | undefined,
): Response {
  if (e instanceof ApiError) return errorResponse(e, family);
  if (req.signal.aborted || (e instanceof DOMException && e.name === "AbortError")) {
    // The client went away; nobody will read this answer.
    sim.log.debug("client disconnected", { path: pathname });
    return new Response(null, { status: 499 });
  }
  sim.log.error("unhandled error", { path: pathname, error: String(e) });
  return errorResponse(new ApiError(500, "Internal server error"), family);
}

/** One request's context; a class, so that a request allocates few closures. */
class Context implements RequestContext {
  #watch: Watch | undefined;
  #requestId: string | undefined;
  /** Set once the request registered itself as long with the reaper. */
  #conn: ConnectionRecord | undefined;
  /** A stream holds the registration past the handler's return. */
  #held = false;
  constructor(
    readonly sim: Simulator,
    readonly port: number,
    private readonly req: Request,
    private readonly href: string,
    private parsed: URL | undefined,
    readonly arrival: number,
    private readonly watcher: DisconnectWatcher | undefined,
    private readonly info: Deno.ServeHandlerInfo<Deno.NetAddr> | undefined,
    private readonly connections: ConnectionTable | undefined,
  ) {}

  /**
   * Registers the request as long with the reaper (its connection is then
   * exempt from the header and idle rules until release()). Quick requests
   * never pay for it: reading the client's address is a runtime call.
   */
  #long(): ConnectionRecord | undefined {
    if (this.#conn || !this.connections || !this.info) return this.#conn;
    return this.#conn = this.connections.begin(this.info.remoteAddr.port);
  }

  uploading(): void {
    const conn = this.#long();
    if (conn && Number.isNaN(conn.bodySince)) conn.bodySince = this.arrival;
  }

  bodyRead(): void {
    if (this.#conn) this.#conn.bodySince = NaN;
  }

  closeConnection(): void {
    const conn = this.#long();
    if (conn) conn.closeAsap = true;
  }

  get url(): URL {
    return this.parsed ??= new URL(this.href);
  }

  /** X-Request-Id or a generated one (read once, on first use). */
  get requestId(): string {
    return this.#requestId ??= header(this.req, "x-request-id") ?? crypto.randomUUID();
  }

  clientGone = (): AbortSignal => {
    this.#long();
    if (!this.watcher || !this.info) return this.req.signal;
    this.#watch ??= this.watcher.watch(this.info.remoteAddr.port);
    return AbortSignal.any([this.req.signal, this.#watch.signal]);
  };

  holdConnection(): () => void {
    const conn = this.#long();
    if (!conn) return () => {};
    this.#held = true;
    return () => requestDone(conn);
  }

  abortable(abort: () => void): () => void {
    return this.sim.inflight.add(this.requestId, abort);
  }

  /** The handler returned (a held stream is released when it ends). */
  release(): void {
    this.#watch?.release();
    if (this.#conn && !this.#held) requestDone(this.#conn);
  }
}

/**
 * --api-key: a protected route (and any path under /v1, known or not, so 401
 * comes before 404, as in vLLM) needs `Authorization: Bearer <key>` (an
 * Anthropic route also takes `x-api-key: <key>`). Open
 * routes, unknown paths elsewhere and CORS preflights need nothing.
 */
function checkApiKey(req: Request, pathname: string, route: Route | undefined, cfg: Config): void {
  const key = cfg["api-key"];
  if (key === "" || req.method === "OPTIONS") return;
  const access = route ? route.access ?? "key" : pathname.startsWith("/v1") ? "key" : "open";
  if (access === "open" || (access === "metrics" && !cfg["metrics-require-api-key"])) return;
  const given = header(req, "authorization") ?? "";
  if (sameText(given, `Bearer ${key}`)) return;
  // The Anthropic SDK sends its key as x-api-key.
  if (route?.family === "anthropic" && sameText(header(req, "x-api-key") ?? "", key)) return;
  throw new ApiError(401, "Unauthorized");
}

/** Compares without stopping at the first difference (no timing hint about the key). */
function sameText(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < y.length; i++) diff |= (x[i] ?? 0) ^ y[i];
  return diff === 0;
}
