/** What the OpenAI-shaped families share: the usage object and the frame of a stream. */
import type { UsageCounts } from "../../serving/output.ts";

export interface UsageJson {
  prompt_tokens: number;
  total_tokens: number;
  completion_tokens: number;
  prompt_tokens_details: { cached_tokens: number } | null;
}

export function usageJson(u: UsageCounts): UsageJson {
  return {
    prompt_tokens: u.prompt,
    total_tokens: u.prompt + u.completion,
    completion_tokens: u.completion,
    prompt_tokens_details: u.thresholdAnswer ? null : { cached_tokens: u.cached },
  };
}

/** usageJson's JSON text, written directly (same bytes as JSON.stringify). */
export function usageText(u: UsageCounts): string {
  const details = u.thresholdAnswer ? "null" : `{"cached_tokens":${u.cached}}`;
  return `{"prompt_tokens":${u.prompt},"total_tokens":${u.prompt + u.completion},` +
    `"completion_tokens":${u.completion},"prompt_tokens_details":${details}}`;
}

/** `stop_reason` as JSON: the stop string or token id that ended a choice. */
export function stopReasonText(r: string | number | null): string {
  return r === null ? "null" : JSON.stringify(r);
}

export const SSE_DONE = "data: [DONE]\n\n";

/** What a family needs to name its answer. */
export interface AnswerMeta {
  /** X-Request-Id or a generated one. */
  requestId: string;
  /** Unix seconds. */
  created: number;
}
