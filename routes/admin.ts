/**
 * GET /admin/config: the effective configuration (flag names as keys,
 * durations as strings). POST /admin/config: a partial update of the
 * run-time settings, validated like start-up and swapped in one step, so a
 * request in flight keeps the snapshot it took on arrival.
 */
import { applyAdminUpdate, type Config, ConfigError, configToJSON } from "../lib/config.ts";
import { ApiError } from "../lib/errors.ts";
import { json, readJson, type RequestContext } from "./http.ts";

export function getAdminConfig(_req: Request, ctx: RequestContext): Response {
  const cfg = ctx.sim.config;
  const out = configToJSON(cfg);
  // Ranks share the configured port only as a base (data-parallel.md): left
  // out when there are several, as for a fleet's pods.
  if (cfg["data-parallel-size"] > 1 || cfg.pods > 1 || cfg.fleet !== "") delete out.port;
  return json(out);
}

export async function postAdminConfig(req: Request, ctx: RequestContext): Promise<Response> {
  const { sim } = ctx;
  const patch = await readJson(req, ctx);
  let next: Config;
  try {
    // Built from the config current now (after the body arrived): no update is lost.
    next = applyAdminUpdate(sim.config, patch);
  } catch (e) {
    if (e instanceof ConfigError) throw new ApiError(400, e.message, e.option || null);
    throw e;
  }
  sim.replaceConfig(next);
  sim.log.info("configuration updated", { keys: Object.keys(patch as object) });
  return json(configToJSON(next));
}
