/** Pieces the generation endpoints share. */
import type { GenerationFlags } from "../lib/generation.ts";
import type { UsageCounts } from "../lib/streaming.ts";

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
