/**
 * vLLM's run-time LoRA endpoints. Loading never reads the path (no model
 * runs): the adapter becomes servable at once. Unloading lets requests in
 * flight finish; new requests for the name get 404.
 */
import { badRequest } from "../lib/errors.ts";
import { optString, requireObject } from "../lib/validate.ts";
import { readJson, type RequestContext, text } from "./http.ts";

export async function loadLoraAdapter(req: Request, ctx: RequestContext): Promise<Response> {
  const body = requireObject(await readJson(req, ctx));
  const name = optString(body, "lora_name");
  const path = optString(body, "lora_path");
  if (!name || !path) {
    throw badRequest("Both 'lora_name' and 'lora_path' must be provided.", "lora_name");
  }
  ctx.sim.models.loadLora(name, path);
  ctx.sim.log.info("LoRA adapter loaded", { name, path });
  return text(`Success: LoRA adapter '${name}' added successfully.`);
}

export async function unloadLoraAdapter(req: Request, ctx: RequestContext): Promise<Response> {
  const body = requireObject(await readJson(req, ctx));
  const name = optString(body, "lora_name");
  if (!name) {
    throw badRequest("either 'lora_name' and 'lora_int_id' needs to be provided.", "lora_name");
  }
  ctx.sim.models.unloadLora(name);
  ctx.sim.log.info("LoRA adapter unloaded", { name });
  return text(`Success: LoRA adapter '${name}' removed successfully.`);
}
