/**
 * Turns a validated generation request into a plan the engine can run: the
 * prompt's token count, each choice's output tokens and finish reason, and
 * the context-window check. Shared by every generation endpoint.
 */
import {
  CutTextStream,
  echoTokens,
  RandomTextStream,
  responseLength,
  TextStream,
  TokenListStream,
} from "../content.ts";
import type { FinishReason, JobSpec } from "../engine.ts";
import { badRequest, contextLengthError } from "../errors.ts";
import { jsonValueLimits, randomJsonValue, unsatisfiable } from "../json_value.ts";
import type { Tokenizer } from "../tokenizer.ts";
import type { ResolvedModel } from "../models.ts";
import type {
  GenerationFlags,
  GenerationParams,
  KvTransferParams,
  PromptInput,
  ResponseFormat,
  StopRule,
} from "./params.ts";
import type { Rng } from "../rng.ts";
import type { Simulator } from "../simulator.ts";

export interface GenerationPlan {
  promptTokens: number;
  cachedTokens: number;
  /**
   * Choice j has spec.lengths[j] tokens and ends with spec.finishReasons[j]:
   * two small arrays, so a queued request with many choices stays small.
   */
  choices: number;
  /**
   * The text has nothing JSON must escape (it comes from the built-in
   * sentences, tests/content_test.ts checks them), so writing it into JSON
   * needs quotes only, not JSON.stringify (~0.5 µs for 100 tokens).
   */
  jsonSafe: boolean;
  /**
   * Choice j's text, made when it is first needed (its first token, or the
   * complete answer): nothing per output token is held before then. Call
   * once per choice.
   */
  text(j: number): TextStream;
  spec: JobSpec;
  /** Per choice, the stop string or token id that ended it; absent when none did. */
  stopReasons?: (string | number | null)[];
  /** kv_transfer_params for the response (P/D prefill side), else null. */
  kvTransferOut: KvTransferParams | null;
}

export function planGeneration(
  sim: Simulator,
  params: GenerationParams,
  prompt: PromptInput,
  model: ResolvedModel,
  flags: GenerationFlags = {},
): GenerationPlan {
  const cfg = sim.config;
  const maxModelLen = cfg["max-model-len"];
  const n = prompt.promptTokens;
  const limit = params.maxTokens ?? (params.prefillOnly ? 0 : 1);
  if (n + limit > maxModelLen) {
    throw contextLengthError(maxModelLen, n, params.maxTokens);
  }
  const rng = sim.requestRng(params.seed);
  const remoteDecode = params.kvTransfer?.do_remote_decode === true;
  const echo = !flags.forceCacheThreshold && !remoteDecode && cfg.mode === "echo";
  const lengths = new Array<number>(params.n);
  const finishReasons = new Array<FinishReason>(params.n);
  // Echo choices share one token list; random ones draw their own text.
  const echoed = echo ? echoTokens(sim.tokenizer, prompt.echoText) : null;
  for (let i = 0; i < params.n; i++) {
    if (params.prefillOnly) {
      // Embeddings: no output; the choice ends with its prefill.
      lengths[i] = 0;
      finishReasons[i] = "stop";
    } else if (flags.forceCacheThreshold) {
      lengths[i] = 0;
      finishReasons[i] = "cache_threshold";
    } else if (remoteDecode) {
      // Prefill side of P/D: one token, then the decode side takes over.
      lengths[i] = 1;
      finishReasons[i] = "remote_decode";
    } else if (echoed) {
      lengths[i] = echoed.length;
      finishReasons[i] = "stop";
    } else {
      const len = responseLength(rng, {
        maxTokens: params.maxTokens,
        ignoreEos: params.ignoreEos,
        promptTokens: n,
        maxModelLen,
      });
      lengths[i] = len.length;
      finishReasons[i] = len.finishReason;
    }
  }
  const format = echoed || flags.forceCacheThreshold || remoteDecode
    ? undefined
    : params.responseFormat;
  let text: Texts;
  if (params.prefillOnly) text = () => new TokenListStream([]);
  else if (echoed) {
    text = () => new TokenListStream(echoed);
  } else if (format) {
    text = jsonAnswers(sim, format, rng, params, lengths, finishReasons);
  } else text = randomAnswers(rng, params.n);
  let stopReasons: (string | number | null)[] | undefined;
  if (params.stop && !params.prefillOnly && !flags.forceCacheThreshold && !remoteDecode) {
    const cut = applyStop(params.stop, sim.tokenizer, text, lengths, finishReasons);
    text = cut.text;
    stopReasons = cut.reasons;
  }
  const spec: JobSpec = {
    lora: model.lora,
    promptTokens: n,
    cachedTokens: 0,
    lengths,
    finishReasons,
    remotePrefill: params.kvTransfer?.do_remote_prefill === true,
    prefillOnly: params.prefillOnly,
    maxTokensParam: params.maxTokens ?? null,
    cfg,
    rng,
  };
  const kvTransferOut: KvTransferParams | null = remoteDecode
    ? {
      do_remote_prefill: true,
      do_remote_decode: false,
      remote_engine_id: sim.engineId,
      // The blocks holding this prompt's KV cache, for the decode side to pull.
      remote_block_ids: Array.from(
        { length: Math.ceil(n / cfg["block-size"]) },
        (_, i) => i,
      ),
      remote_host: sim.reachableHost,
      remote_port: sim.port,
      tp_size: 1,
    }
    : null;
  return {
    promptTokens: n,
    cachedTokens: 0,
    choices: params.n,
    // Echoed text is the client's own; the built-in sentences need no escaping.
    jsonSafe: echoed === null && format === undefined && stopReasons === undefined,
    text,
    spec,
    stopReasons,
    kvTransferOut,
  };
}

/**
 * A choice's text stream. `peek`: a copy that reads ahead (a stop rule's
 * scan, made before the choice is sent) and leaves the stream untouched.
 */
type Texts = (j: number, peek?: boolean) => TextStream;

/**
 * Random built-in text per choice, from streams of its own forked off the
 * request's at plan time: the text never depends on the latency draws made
 * while it is sent, and a stop rule can read a choice ahead on a copy and
 * see exactly what will be sent.
 */
function randomAnswers(rng: Rng, n: number): Texts {
  if (n === 1) {
    const own = rng.fork();
    return (_j, peek) => new RandomTextStream(peek ? own.clone() : own);
  }
  const forks = Array.from({ length: n }, () => rng.fork());
  return (j, peek) => new RandomTextStream(peek ? forks[j].clone() : forks[j]);
}

/**
 * response_format answers: JSON text that parses (json_object) or validates
 * against the schema (json_schema), drawn like tool arguments and cut at
 * max_tokens like any answer (finish_reason length). A schema no value can
 * satisfy is a 400.
 */
function jsonAnswers(
  sim: Simulator,
  format: ResponseFormat,
  rng: Rng,
  params: GenerationParams,
  lengths: number[],
  finishReasons: FinishReason[],
): (j: number) => TextStream {
  const schema = format.type === "json_schema" ? format.schema : JSON_OBJECT_SCHEMA;
  const problem = unsatisfiable(schema);
  if (problem !== null) {
    throw badRequest(`Invalid response_format schema: ${problem}`, "response_format");
  }
  const limits = jsonValueLimits(sim.config);
  const answers: string[][] = [];
  for (let j = 0; j < lengths.length; j++) {
    const pieces = sim.tokenizer.tokenize(JSON.stringify(randomJsonValue(schema, rng, limits)));
    const max = params.maxTokens;
    const cut = max !== undefined && pieces.length > max;
    answers.push(cut ? pieces.slice(0, max) : pieces);
    lengths[j] = answers[j].length;
    finishReasons[j] = cut ? "length" : "stop";
  }
  return (j) => new TokenListStream(answers[j]);
}

/** What json_object answers with: a small object of a known shape. */
const JSON_OBJECT_SCHEMA = {
  type: "object",
  properties: { answer: { type: "string" }, confidence: { type: "number" } },
  required: ["answer", "confidence"],
};

/**
 * `stop` and `stop_token_ids` (vLLM): each choice is read ahead on a copy of
 * its text; the first stop string that appears ends the answer before it
 * (or after it, with include_stop_str_in_output), the first stop token ends
 * it after that token. The tokens up to the match still count, as in vLLM.
 * The text is not held: only a window as long as the longest stop string.
 */
function applyStop(
  rule: StopRule,
  tokenizer: Tokenizer,
  text: Texts,
  lengths: number[],
  finishReasons: FinishReason[],
): { text: Texts; reasons: (string | number | null)[] } {
  const reasons = new Array<string | number | null>(lengths.length).fill(null);
  const limits = new Array<number>(lengths.length).fill(Infinity);
  const ids = new Set(rule.tokenIds);
  let longest = 0;
  for (const st of rule.strings) longest = Math.max(longest, st.length);
  for (let j = 0; j < lengths.length; j++) {
    const ahead = text(j, true);
    let window = "";
    let windowStart = 0; // offset of window[0] in the answer's text
    for (let k = 0; k < lengths[j]; k++) {
      const piece = ahead.next();
      const id = ids.size > 0 ? tokenizer.encode(piece).find((x) => ids.has(x)) : undefined;
      if (id !== undefined) {
        limits[j] = windowStart + window.length + piece.length;
        reasons[j] = id;
        lengths[j] = k + 1;
        finishReasons[j] = "stop";
        break;
      }
      window += piece;
      const hit = firstStop(rule.strings, window, window.length - piece.length - longest + 1);
      if (hit) {
        limits[j] = windowStart + hit.at + (rule.includeStop ? hit.stop.length : 0);
        reasons[j] = hit.stop;
        lengths[j] = k + 1;
        finishReasons[j] = "stop";
        break;
      }
      if (window.length > longest) {
        windowStart += window.length - longest;
        window = window.slice(window.length - longest);
      }
    }
  }
  return {
    text: (j) => limits[j] === Infinity ? text(j) : new CutTextStream(text(j), limits[j]),
    reasons,
  };
}

/** The earliest stop string in `s` that starts at or after `from`. */
function firstStop(
  stops: readonly string[],
  s: string,
  from: number,
): { at: number; stop: string } | null {
  let best: { at: number; stop: string } | null = null;
  for (const stop of stops) {
    const at = s.indexOf(stop, Math.max(0, from));
    if (at >= 0 && (best === null || at < best.at)) best = { at, stop };
  }
  return best;
}
