/**
 * The pipeline's output, as typed events every API family encodes: an
 * answer starts, its choices' tokens arrive, each choice ends with a finish
 * reason, and the request ends with its usage. A family (OpenAI chat SSE,
 * Responses, Anthropic, generate, later gRPC) is one OutputEncoder; the
 * pipeline decides what happens when, the encoder only how it is written.
 */
import type { FinishReason } from "../engine.ts";
import type { GeneratedCall } from "../tools/calls.ts";
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
  /** A tool-call choice's first step (its calls' pieces come later): chat's role chunk. */
  toolStart?(index: number): string;
  /**
   * Piece `piece` (one token of its arguments) of call `c` of choice
   * `index`, a choice that answers with tool calls: each call's pieces in
   * order, the calls in order. `finish` is set on the choice's last piece.
   * Only families that take tools have it.
   */
  toolPiece?(
    index: number,
    calls: readonly GeneratedCall[],
    c: number,
    piece: number,
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
  /** The choice's tool calls; `text` is "" then. */
  calls?: readonly GeneratedCall[];
  /** The text's tokens, one piece each (kept when logprobs are asked for). */
  pieces?: string[];
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
      const calls = plan.calls?.[j];
      const choice: CompletedChoice = {
        index: p * plan.choices + j,
        text: "",
        tokens: lengths[j],
        finish: finishReasons[j],
        stopReason: plan.stopReasons?.[j] ?? null,
        jsonSafe: plan.jsonSafe,
      };
      if (calls) choice.calls = calls;
      else if (plan.keepPieces) {
        const stream = plan.text(j);
        const pieces = new Array<string>(lengths[j]);
        for (let k = 0; k < pieces.length; k++) pieces[k] = stream.next();
        choice.pieces = pieces;
        choice.text = pieces.join("");
      } else choice.text = plan.text(j).take(lengths[j]);
      choices.push(choice);
    }
  }
  return { choices, usage: usageOf(plans) };
}

/** A string as JSON text, skipping JSON.stringify where nothing needs escaping. */
export function jsonString(text: string, safe: boolean): string {
  return safe ? `"${text}"` : JSON.stringify(text);
}
