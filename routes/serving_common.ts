/**
 * What the generation endpoints share: one request pipeline (serveGeneration)
 * that each endpoint family parameterises with its parser, planner, chunk
 * format and response body, plus the special headers and failure injection.
 */
import type { Config } from "../lib/config.ts";
import { ApiError, badRequest } from "../lib/errors.ts";
import { drawFailure, failureError, holdOpen } from "../lib/failures.ts";
import type { GenerationFlags, GenerationPlan } from "../lib/generation.ts";
import type { ResolvedModel } from "../lib/models.ts";
import type { GenerationParams } from "../lib/protocol.ts";
import type { Simulator } from "../lib/simulator.ts";
import { type ChunkFormat, collectPlans, streamPlans, type UsageCounts } from "../lib/streaming.ts";
import { jsonText, readJson, type RequestContext } from "./http.ts";

/** One endpoint family (chat, completions, ...) as the pipeline sees it. */
export interface GenerationEndpoint<B extends GenerationParams> {
  /** Response id prefix: "chatcmpl", "cmpl". */
  idPrefix: string;
  /** Validates the JSON body (ApiError 400 on bad input). */
  parse(body: unknown, cfg: Config): B;
  /** Sequences the request asks for: prompts × n. */
  sequences(body: B): number;
  /** One plan per engine request (vLLM runs each prompt as its own request). */
  plan(sim: Simulator, body: B, model: ResolvedModel, flags: GenerationFlags): GenerationPlan[];
  /** The SSE frames of a streamed answer. */
  chunks(id: string, created: number, body: B): ChunkFormat;
  /** The JSON text of a complete answer. */
  respond(id: string, created: number, body: B, plans: GenerationPlan[]): string;
}

/**
 * The life of a generation request over HTTP: early checks, body, model,
 * failure injection, plan, then either an SSE stream (headers at once) or a
 * JSON answer when the last token would have been sent.
 */
export async function serveGeneration<B extends GenerationParams>(
  req: Request,
  ctx: RequestContext,
  ep: GenerationEndpoint<B>,
): Promise<Response> {
  const { sim } = ctx;
  rejectEarly(req, ctx);
  const held = injectFailure(ctx);
  if (held) return held;
  const cfg = sim.config;
  const body = ep.parse(await readJson(req, ctx), cfg);
  const model = sim.models.require(body.model);
  checkSequences(ep.sequences(body), cfg);
  const plans = ep.plan(sim, body, model, generationFlags(req));
  checkOutputBudget(plans, body.maxTokens, cfg);
  const id = `${ep.idPrefix}-${ctx.requestId}`;
  const created = Math.floor(Date.now() / 1000);
  if (body.stream) {
    const stream = streamPlans(sim.engine, plans, ep.chunks(id, created, body), {
      includeUsage: body.includeUsage,
      continuousUsage: body.continuousUsage,
      signal: () => req.signal, // a streamed body is cancelled on disconnect anyway
      arrival: ctx.arrival,
      stallTimeoutMs: cfg["stream-stall-timeout"],
      onStall: () => sim.log.info("dropped a client that stopped reading its stream", { id }),
      onLong: () => ctx.holdConnection(),
    });
    return new Response(stream, { headers: SSE_HEADERS });
  }
  const running = collectPlans(sim.engine, plans, ctx.clientGone, ctx.arrival);
  if (running) await running;
  return jsonText(ep.respond(id, created, body, plans));
}

/** --max-sequences-per-request: prompts × n. */
function checkSequences(sequences: number, cfg: Config): void {
  const max = cfg["max-sequences-per-request"];
  if (sequences <= max) return;
  throw badRequest(
    `This request asks for ${sequences} sequences (prompts × n); at most ${max} per request ` +
      `(--max-sequences-per-request).`,
    "n",
  );
}

/**
 * --max-output-tokens-per-request: what the request's sequences may
 * generate, counted before anything runs: max_tokens for each (a promise the
 * client asked for), else the length drawn for it.
 */
function checkOutputBudget(plans: GenerationPlan[], maxTokens: number | undefined, cfg: Config) {
  const max = cfg["max-output-tokens-per-request"];
  let reserved = 0;
  for (const p of plans) {
    for (const len of p.spec.lengths) reserved += maxTokens ?? len;
  }
  if (reserved <= max) return;
  throw badRequest(
    `This request may generate up to ${reserved} tokens over its sequences; at most ${max} ` +
      `per request (--max-output-tokens-per-request). Lower max_tokens or n.`,
    maxTokens === undefined ? "n" : "max_tokens",
  );
}

export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
};

export function usageJson(u: UsageCounts) {
  return {
    prompt_tokens: u.prompt,
    total_tokens: u.prompt + u.completion,
    completion_tokens: u.completion,
    prompt_tokens_details: { cached_tokens: u.cached },
  };
}

/** usageJson's JSON text, written directly (same bytes as JSON.stringify). */
export function usageText(u: UsageCounts): string {
  return `{"prompt_tokens":${u.prompt},"total_tokens":${u.prompt + u.completion},` +
    `"completion_tokens":${u.completion},"prompt_tokens_details":{"cached_tokens":${u.cached}}}`;
}

/** Special request headers that steer generation (api.md). */
export function generationFlags(req: Request): GenerationFlags {
  return {
    forceCacheThreshold:
      req.headers.get("x-cache-threshold-finish-reason")?.toLowerCase() === "true",
  };
}

/**
 * Checks every generation endpoint makes before reading the body: 503 while
 * sleeping, then `X-Return-Error: <status>` (answer at once with that status;
 * a value that is not an integer 400–599 → 400). Throws ApiError.
 */
export function rejectEarly(req: Request, ctx: RequestContext): void {
  if (ctx.sim.sleeping) {
    throw new ApiError(503, "The server is sleeping; POST /wake_up to resume.");
  }
  const raw = req.headers.get("x-return-error");
  if (raw === null) return;
  const v = raw.trim();
  const status = /^\d{3}$/.test(v) ? Number(v) : NaN;
  if (!(status >= 400 && status <= 599)) {
    throw new ApiError(
      400,
      `Invalid X-Return-Error header ${JSON.stringify(raw)}: must be an HTTP error status 400-599.`,
    );
  }
  throw new ApiError(status, `Simulated error requested by X-Return-Error: ${status}.`);
}

/**
 * Failure injection, as the reference simulator does it: on arrival, before
 * the body is read, with messages naming the served model (--model). Throws
 * the drawn failure's ApiError; for a `timeout` failure it returns a promise
 * that never resolves: it rejects when the client leaves or the server-side
 * bound passes. Returns undefined when the request goes on.
 */
export function injectFailure(ctx: RequestContext): Promise<never> | undefined {
  const { sim } = ctx;
  const type = drawFailure(sim.config, sim.rng);
  if (type === null) return undefined;
  if (type === "timeout") return holdOpen(sim, ctx.clientGone());
  throw failureError(type, sim.config.model);
}
