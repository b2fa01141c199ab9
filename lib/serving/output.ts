/**
 * The pipeline's output, as typed events every API family encodes: an
 * answer starts, its choices' tokens arrive, each choice ends with a finish
 * reason, and the request ends with its usage. A family (OpenAI chat SSE,
 * Responses, Anthropic, generate, later gRPC) is one OutputEncoder; the
 * pipeline decides what happens when, the encoder only how it is written.
 */
import type { FinishReason } from "../engine.ts";
import type { GenerationPlan } from "./plan.ts";

export interface UsageCounts {
  prompt: number;
  completion: number;
  cached: number;
  /** A cache_threshold answer: no cache details are reported (api.md). */
  thresholdAnswer?: boolean;
}

/**
 * How one family writes a streamed answer. Each method returns the wire
 * text of its event ("" when the family sends nothing for it). Calls come
 * in order: start, then per choice its tokens and its choiceEnd (choices
 * interleave), then end.
 */
export interface OutputEncoder {
  /** The answer begins: its first step is due (after queueing and prefill). */
  start(): string;
  /**
   * Token k of choice `index`. `finish` is set on the choice's last token
   * (OpenAI writes it into that token's frame); `usage` only with
   * continuous usage stats.
   */
  token(
    index: number,
    text: string,
    k: number,
    finish: FinishReason | null,
    usage: UsageCounts | null,
  ): string;
  /** Choice `index` has ended after `tokens` tokens (0: it had none). */
  choiceEnd(index: number, finish: FinishReason, tokens: number): string;
  /** Every choice has ended. */
  end(usage: UsageCounts): string;
}

/** One finished choice of a complete (non-streamed) answer. */
export interface CompletedChoice {
  index: number;
  text: string;
  tokens: number;
  finish: FinishReason;
  /** The stop string or stop token id that ended it, else null. */
  stopReason: string | number | null;
  /** `text` needs no JSON escaping (built-in sentences). */
  jsonSafe: boolean;
}

/** A complete answer: every choice's text, in index order, and the usage. */
export interface CompletedAnswer {
  choices: CompletedChoice[];
  usage: UsageCounts;
}

export function usageOf(plans: readonly GenerationPlan[]): UsageCounts {
  let prompt = 0, completion = 0, cached = 0;
  let thresholdAnswer = false;
  for (const p of plans) {
    prompt += p.promptTokens;
    // Known once the request started: its leading run of cached blocks.
    cached += p.spec.cachedTokens;
    for (const len of p.spec.lengths) completion += len;
    if (p.spec.finishReasons[0] === "cache_threshold") thresholdAnswer = true;
  }
  return thresholdAnswer
    ? { prompt, completion, cached, thresholdAnswer }
    : { prompt, completion, cached };
}

/**
 * The texts of plans that ran to the end, choices numbered plan-major
 * (vLLM runs each prompt as its own request).
 */
export function completedAnswer(plans: readonly GenerationPlan[]): CompletedAnswer {
  const choices: CompletedChoice[] = [];
  for (let p = 0; p < plans.length; p++) {
    const plan = plans[p];
    const { lengths, finishReasons } = plan.spec;
    for (let j = 0; j < plan.choices; j++) {
      choices.push({
        index: p * plan.choices + j,
        text: plan.text(j).take(lengths[j]),
        tokens: lengths[j],
        finish: finishReasons[j],
        stopReason: plan.stopReasons?.[j] ?? null,
        jsonSafe: plan.jsonSafe,
      });
    }
  }
  return { choices, usage: usageOf(plans) };
}

/** A string as JSON text, skipping JSON.stringify where nothing needs escaping. */
export function jsonString(text: string, safe: boolean): string {
  return safe ? `"${text}"` : JSON.stringify(text);
}
