/** Pieces the generation endpoints share. */
import { ApiError } from "../lib/errors.ts";
import { drawFailure, failureError, holdOpen } from "../lib/failures.ts";
import type { GenerationFlags } from "../lib/generation.ts";
import type { UsageCounts } from "../lib/streaming.ts";
import type { RequestContext } from "./http.ts";

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

export function usageText(u: UsageCounts): string {
  return JSON.stringify(usageJson(u));
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
 * Failure injection, right before planning (after the body and model were
 * validated). Throws the drawn failure's ApiError; for a `timeout` failure it
 * returns a promise that never resolves: it rejects when the client leaves or
 * the server-side bound passes. Returns undefined when the request goes on.
 * The decision is synchronous so nothing runs between it and the plan.
 */
export function injectFailure(
  ctx: RequestContext,
  model: string,
): Promise<never> | undefined {
  const { sim } = ctx;
  const type = drawFailure(sim.config, sim.rng);
  if (type === null) return undefined;
  if (type === "timeout") return holdOpen(sim, ctx.clientGone());
  throw failureError(type, model);
}
