/**
 * CORS as vLLM serves it (Starlette's CORSMiddleware with vLLM's defaults:
 * any origin, method and header, no credentials): preflight answers, and
 * the allow-origin headers on every answer to a request with an Origin.
 */
import type { Config } from "../lib/config.ts";

const ALL_METHODS = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"];
/** Headers a browser may always send; Starlette allows them in any policy. */
const SAFELISTED = ["Accept", "Accept-Language", "Content-Language", "Content-Type"];

export class CorsPolicy {
  readonly #anyOrigin: boolean;
  readonly #anyHeader: boolean;
  readonly #origins: Set<string>;
  readonly #methods: string[];
  readonly #headers: Set<string>;
  readonly #credentials: boolean;
  /** Preflight headers that do not depend on the request. */
  readonly #preflight: [string, string][] = [];

  constructor(cfg: Config) {
    this.#anyOrigin = cfg["allowed-origins"].includes("*");
    this.#origins = new Set(cfg["allowed-origins"]);
    this.#methods = cfg["allowed-methods"].includes("*") ? ALL_METHODS : cfg["allowed-methods"];
    this.#anyHeader = cfg["allowed-headers"].includes("*");
    const headers = [...new Set([...SAFELISTED, ...cfg["allowed-headers"]])].sort();
    this.#headers = new Set(headers.map((h) => h.toLowerCase()));
    this.#credentials = cfg["allow-credentials"];
    if (this.#explicitOrigin) this.#preflight.push(["vary", "Origin"]);
    else this.#preflight.push(["access-control-allow-origin", "*"]);
    this.#preflight.push(["access-control-allow-methods", this.#methods.join(", ")]);
    this.#preflight.push(["access-control-max-age", "600"]);
    if (!this.#anyHeader) {
      this.#preflight.push(["access-control-allow-headers", headers.join(", ")]);
    }
    if (this.#credentials) this.#preflight.push(["access-control-allow-credentials", "true"]);
  }

  /** With credentials or a list of origins, the answer names the origin. */
  get #explicitOrigin(): boolean {
    return !this.#anyOrigin || this.#credentials;
  }

  #allowed(origin: string): boolean {
    return this.#anyOrigin || this.#origins.has(origin);
  }

  /** A browser's preflight: OPTIONS with Origin and Access-Control-Request-Method. */
  static isPreflight(req: Request, origin: string | null): boolean {
    return origin !== null && req.method === "OPTIONS" &&
      req.headers.has("access-control-request-method");
  }

  preflight(req: Request, origin: string): Response {
    const headers = new Headers(this.#preflight);
    const failures: string[] = [];
    if (this.#allowed(origin)) {
      if (this.#explicitOrigin) headers.set("access-control-allow-origin", origin);
    } else failures.push("origin");
    if (!this.#methods.includes(req.headers.get("access-control-request-method")!)) {
      failures.push("method");
    }
    const asked = req.headers.get("access-control-request-headers");
    if (this.#anyHeader && asked !== null) headers.set("access-control-allow-headers", asked);
    else if (asked !== null) {
      for (const h of asked.split(",")) {
        if (!this.#headers.has(h.trim().toLowerCase())) {
          failures.push("headers");
          break;
        }
      }
    }
    headers.set("content-type", "text/plain; charset=utf-8");
    if (failures.length > 0) {
      return new Response(`Disallowed CORS ${failures.join(", ")}`, { status: 400, headers });
    }
    return new Response("OK", { status: 200, headers });
  }

  /** The headers of an ordinary answer to a cross-origin request. */
  decorate(res: Response, req: Request, origin: string): void {
    const h = res.headers;
    if (this.#anyOrigin) {
      // A request with cookies must see its own origin, never "*".
      if (req.headers.has("cookie")) {
        h.set("access-control-allow-origin", origin);
        h.append("vary", "Origin");
      } else h.set("access-control-allow-origin", "*");
    } else if (this.#allowed(origin)) {
      h.set("access-control-allow-origin", origin);
      h.append("vary", "Origin");
    }
    if (this.#credentials) h.set("access-control-allow-credentials", "true");
  }
}
