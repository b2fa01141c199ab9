/** GET /v1/models: served model names and LoRA adapters. */
import { json, type RequestContext } from "./http.ts";

export function listModels(_req: Request, ctx: RequestContext): Response {
  return json({ object: "list", data: ctx.sim.models.list() });
}
