/**
 * vLLM's own endpoints: token-in/token-out generation (through the engine
 * like every generation family), and the tokenizer side: /tokenize,
 * /detokenize, the two render endpoints and GET /query (the Mooncake
 * bootstrap's engine ids), which do not run through the engine and take no
 * failure injection or X-Return-Error.
 */
import { renderBody, renderChatCompletion, renderCompletions } from "../lib/api/vllm/render.ts";
import {
  detokenizeAnswer,
  parseDetokenizeRequest,
  parseTokenizeRequest,
  tokenizeAnswer,
  unparsableTokenizeBody,
} from "../lib/api/vllm/tokenize.ts";
import {
  generateEncoder,
  generateInput,
  type GenerateRequest,
  generateResponse,
  parseGenerateRequest,
} from "../lib/api/vllm/generate.ts";
import { ApiError } from "../lib/errors.ts";
import { engineIdFor } from "../lib/simulator.ts";
import { type HttpFamily, serveGeneration } from "./generation.ts";
import { json, jsonText, readJson, type RequestContext } from "./http.ts";

/** POST /inference/v1/generate. */
export function generate(req: Request, ctx: RequestContext): Response | Promise<Response> {
  const tokenizer = ctx.sim.tokenizer;
  const family: HttpFamily<GenerateRequest> = {
    label: "generate request",
    parse: parseGenerateRequest,
    input: (sim, body) => generateInput(body, sim.models.displayName),
    encoder: (meta, body, admitted) => generateEncoder(meta, body, tokenizer, admitted),
    respond: (meta, _body, admitted, answer) => generateResponse(meta, admitted, answer, tokenizer),
  };
  return serveGeneration(req, ctx, family);
}

export async function tokenize(req: Request, ctx: RequestContext): Promise<Response> {
  let body: unknown;
  try {
    body = await readJson(req, ctx);
  } catch (e) {
    throw e instanceof ApiError ? unparsableTokenizeBody(e) : e;
  }
  const { sim } = ctx;
  const parsed = parseTokenizeRequest(body);
  return jsonText(await tokenizeAnswer(sim.tokenizer, sim.config["max-model-len"], parsed));
}

export async function detokenize(req: Request, ctx: RequestContext): Promise<Response> {
  const body = parseDetokenizeRequest(await readJson(req, ctx));
  if (body.model !== undefined) ctx.sim.models.require(body.model);
  return jsonText(detokenizeAnswer(ctx.sim.tokenizer, body.tokens));
}

export async function completionsRender(req: Request, ctx: RequestContext): Promise<Response> {
  const body = renderBody(ctx.sim.models, await readJson(req, ctx));
  return jsonText(await renderCompletions(ctx.sim.tokenizer, body));
}

export async function chatCompletionsRender(req: Request, ctx: RequestContext): Promise<Response> {
  const body = renderBody(ctx.sim.models, await readJson(req, ctx));
  return jsonText(await renderChatCompletion(ctx.sim.tokenizer, body));
}

/**
 * Every rank's engine id, rank 0 first. Ids derive from the seed and the
 * rank alone, so every rank (and every process of a multi-process
 * deployment) answers the same map, and rank r's entry is its own id.
 */
export function query(_req: Request, ctx: RequestContext): Response {
  const cfg = ctx.sim.config;
  const ids: Record<string, { engine_id: string }> = {};
  for (let r = 0; r < cfg["data-parallel-size"]; r++) {
    ids[String(r)] = { engine_id: engineIdFor(cfg.seed, r) };
  }
  return json(ids);
}
