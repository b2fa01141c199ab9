/** GET /metrics (Prometheus text format) and the deprecated POST /fake_metrics. */
import { applyAdminUpdate, ConfigError } from "../lib/config.ts";
import { badRequest } from "../lib/errors.ts";
import { CONTENT_TYPE } from "../lib/metrics.ts";
import { json, readJson, type RequestContext } from "./http.ts";

export async function metrics(_req: Request, ctx: RequestContext): Promise<Response> {
  const body = await ctx.sim.metrics.exposition();
  return new Response(body, { headers: { "content-type": CONTENT_TYPE } });
}

/** Partial update of the fake metrics, with POST /admin/config's merge rules. */
export async function fakeMetrics(req: Request, ctx: RequestContext): Promise<Response> {
  const { sim } = ctx;
  const body = await readJson(req, ctx);
  try {
    sim.replaceConfig(applyAdminUpdate(sim.config, { "fake-metrics": body }));
  } catch (e) {
    if (e instanceof ConfigError) throw badRequest(e.message, "fake-metrics");
    throw e;
  }
  return json({ "fake-metrics": sim.config["fake-metrics"] });
}

/**
 * GET /fleet/targets: the process's pods as Prometheus HTTP service
 * discovery (http_sd_configs; the same JSON as --sd-file), on every pod.
 */
export function fleetTargets(_req: Request, ctx: RequestContext): Response {
  return json(ctx.sim.fleet);
}
