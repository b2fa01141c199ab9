/**
 * Dispatch: one table of (method, path) → handler. Unknown paths answer 404,
 * known paths with another method 405, both in the error shape. Every
 * response gets the pod headers and, when enabled, X-Request-Id.
 */
import { ApiError } from "../lib/errors.ts";
import type { Simulator } from "../lib/simulator.ts";
import type { DisconnectWatcher, Watch } from "./disconnect.ts";
import { errorResponse, type Handler, type RequestContext } from "./http.ts";

export interface Route {
  method: "GET" | "POST";
  path: string;
  handler: Handler;
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
) => Promise<Response>;

export function createRouter(
  sim: Simulator,
  routes: readonly Route[],
  port: number,
  pod: PodInfo,
  watcher?: DisconnectWatcher,
): ServeHandler {
  const table = new Map<string, Map<string, Handler>>();
  for (const r of routes) {
    let byMethod = table.get(r.path);
    if (!byMethod) table.set(r.path, byMethod = new Map());
    byMethod.set(r.method, r.handler);
  }
  const podHeaders: [string, string][] = [];
  if (pod.podName) podHeaders.push(["x-inference-pod", pod.podName]);
  if (pod.podName) podHeaders.push(["x-inference-port", String(port)]);
  if (pod.podNamespace) podHeaders.push(["x-inference-namespace", pod.podNamespace]);

  return async (req, info): Promise<Response> => {
    const href = req.url;
    let url: URL | undefined;
    // The raw path is looked up first; only a miss (or a request that needs
    // the URL) pays for parsing it, which also normalises the path.
    let pathname = rawPath(href);
    let byMethod = table.get(pathname);
    if (!byMethod) {
      url = new URL(href);
      pathname = url.pathname;
      byMethod = table.get(pathname);
    }
    const ctx = new Context(sim, port, req, href, url, watcher, info);
    let res: Response;
    const handler = byMethod?.get(req.method);
    try {
      checkApiKey(req, pathname, sim.config["api-key"]);
      if (!byMethod) throw new ApiError(404, `Not Found: ${pathname}`);
      if (!handler) {
        throw new ApiError(405, `Method Not Allowed: ${req.method} ${pathname}`);
      }
      res = await handler(req, ctx);
    } catch (e) {
      if (e instanceof ApiError) {
        res = errorResponse(e);
      } else if (req.signal.aborted || (e instanceof DOMException && e.name === "AbortError")) {
        // The client went away; nobody will read this answer.
        res = new Response(null, { status: 499 });
      } else {
        sim.log.error("unhandled error", { path: pathname, error: String(e) });
        res = errorResponse(new ApiError(500, "Internal server error"));
      }
    } finally {
      ctx.release();
    }
    for (const [k, v] of podHeaders) res.headers.set(k, v);
    if (sim.config["enable-request-id-headers"]) res.headers.set("x-request-id", ctx.requestId);
    if (byMethod && !handler) res.headers.set("allow", [...byMethod.keys()].join(", "));
    if (sim.config["log-http"]) {
      sim.log.info("http", { method: req.method, path: pathname, status: res.status });
    }
    return res;
  };
}

/** One request's context; a class so that a request allocates no closures. */
class Context implements RequestContext {
  readonly arrival = performance.now();
  #watch: Watch | undefined;
  #requestId: string | undefined;
  constructor(
    readonly sim: Simulator,
    readonly port: number,
    private readonly req: Request,
    private readonly href: string,
    private parsed: URL | undefined,
    private readonly watcher: DisconnectWatcher | undefined,
    private readonly info: Deno.ServeHandlerInfo<Deno.NetAddr> | undefined,
  ) {}

  get url(): URL {
    return this.parsed ??= new URL(this.href);
  }

  /** X-Request-Id or a generated one (read once, on first use). */
  get requestId(): string {
    return this.#requestId ??= this.req.headers.get("x-request-id") ?? crypto.randomUUID();
  }

  clientGone = (): AbortSignal => {
    if (!this.watcher || !this.info) return this.req.signal;
    this.#watch ??= this.watcher.watch(this.info.remoteAddr.port);
    return AbortSignal.any([this.req.signal, this.#watch.signal]);
  };

  release(): void {
    this.#watch?.release();
  }
}

/**
 * vLLM's --api-key rule: every path under /v1 (known or not, so 401 comes
 * before 404) needs `Authorization: Bearer <key>`; other paths (health,
 * metrics, admin, sleep...) and CORS preflights stay open.
 */
function checkApiKey(req: Request, pathname: string, key: string): void {
  if (key === "" || req.method === "OPTIONS" || !pathname.startsWith("/v1")) return;
  const given = req.headers.get("authorization") ?? "";
  if (!sameText(given, `Bearer ${key}`)) throw new ApiError(401, "Unauthorized");
}

/** Compares without stopping at the first difference (no timing hint about the key). */
function sameText(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < y.length; i++) diff |= (x[i] ?? 0) ^ y[i];
  return diff === 0;
}
