/** Liveness, readiness and version endpoints. */
import { ApiError } from "../lib/errors.ts";
import { VERSION } from "../lib/version.ts";
import { errorResponse, json, type RequestContext } from "./http.ts";

export function health(_req: Request, ctx: RequestContext): Response {
  const { sim } = ctx;
  return json({
    status: "healthy",
    queue_depth: sim.engine.waitingCount,
    running: sim.engine.runningCount,
    uptime_seconds: Math.round((performance.now() - sim.startedAt) / 1000),
  });
}

/** 503 until startup-duration has passed, and while sleeping. */
export function ready(_req: Request, ctx: RequestContext): Response {
  const { sim } = ctx;
  if (sim.isReady()) return json({ status: "ready" });
  const why = sim.sleeping ? "The server is sleeping." : "The server is starting up.";
  return errorResponse(new ApiError(503, why));
}

export function version(): Response {
  return json({ version: VERSION });
}
