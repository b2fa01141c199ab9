/**
 * Sleep mode (api.md "Sleep mode"): POST /sleep, POST /wake_up[?tags=...],
 * GET /is_sleeping. /sleep needs enable-sleep-mode and env
 * VLLM_SERVER_DEV_MODE=1 at start-up; otherwise it answers 200 and is ignored
 * (logged). While asleep, generation endpoints answer 503 and readiness 503;
 * requests already running finish normally.
 *
 * vLLM can wake weights and KV cache separately (`tags=weights`, then
 * `tags=kv_cache`) and stays asleep until both are back. The simulator has no
 * weights, so any /wake_up leaves sleep; the tags go to the sleep hooks (the
 * KV cache re-enables itself when tags are absent or include kv_cache).
 */
import { json, type RequestContext } from "./http.ts";

export function sleep(_req: Request, ctx: RequestContext): Response {
  const { sim } = ctx;
  if (!sim.config["enable-sleep-mode"] || !sim.devMode) {
    sim.log.info("/sleep ignored: needs --enable-sleep-mode and env VLLM_SERVER_DEV_MODE=1", {
      "enable-sleep-mode": sim.config["enable-sleep-mode"],
      VLLM_SERVER_DEV_MODE: sim.devMode,
    });
    return new Response(null, { status: 200 });
  }
  const level = ctx.url.searchParams.get("level") ?? "1";
  if (!sim.sleeping) {
    sim.sleeping = true;
    for (const h of sim.sleepHooks) h.sleep?.();
  }
  sim.log.info("sleeping", { level });
  return new Response(null, { status: 200 });
}

export function wakeUp(_req: Request, ctx: RequestContext): Response {
  const { sim } = ctx;
  // vLLM takes repeated ?tags=a&tags=b; a comma list is accepted as well.
  const tags = ctx.url.searchParams.getAll("tags").flatMap((t) => t.split(","))
    .map((t) => t.trim()).filter((t) => t !== "");
  if (sim.sleeping) {
    sim.sleeping = false;
    for (const h of sim.sleepHooks) h.wake?.(tags);
    sim.log.info("awake", { tags });
  }
  return new Response(null, { status: 200 });
}

export function isSleeping(_req: Request, ctx: RequestContext): Response {
  return json({ is_sleeping: ctx.sim.sleeping });
}
