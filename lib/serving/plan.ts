/**
 * Turns a validated generation request into a plan the engine can run: the
 * prompt's token count, each choice's output tokens and finish reason, and
 * the context-window check. Shared by every generation endpoint.
 */
import {
  CutTextStream,
  ListThenStream,
  RandomTextStream,
  responseLength,
  TextStream,
  TokenListStream,
} from "../content.ts";
import type { FinishReason, JobSpec } from "../engine.ts";
import { badRequest, contextLengthError } from "../errors.ts";
import { jsonValueLimits, randomJsonValue, unsatisfiable } from "../json_value.ts";
import type { SentenceTable, Tokenizer } from "../tokenizer.ts";
import type { KvPrompt } from "../kv/block_manager.ts";
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
import { callTokens, drawToolCalls, type GeneratedCall } from "../tools/calls.ts";
import type { DatasetPick } from "../dataset/dataset.ts";
import { promptHash } from "../dataset/hash.ts";

export interface GenerationPlan {
  promptTokens: number;
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
  /**
   * Per choice, its tool calls when it answers with calls (it has no text
   * then; its tokens are the calls' tokens); absent when no choice has any.
   */
  calls?: (readonly GeneratedCall[] | null)[];
  /** A complete answer keeps each choice's tokens (logprobs are written per token). */
  keepPieces: boolean;
  /** Per choice, the recorded answer it opens with (a dataset's), else null; absent: none. */
  recorded?: (DatasetPick | null)[];
}

/**
 * --max-output-tokens-per-request, counted as a request's plans are drawn
 * and before any answer text is made (a JSON answer or a stop rule's
 * read-ahead costs work per token): max_tokens for each sequence (a promise
 * the client asked for), else the length drawn for it.
 */
export class OutputBudget {
  #reserved = 0;
  constructor(readonly max: number, readonly maxTokens: number | undefined) {}

  /** Reserves `tokens`; throws the 400 once the request is over the limit. */
  take(tokens: number): void {
    this.#reserved += tokens;
    if (this.#reserved <= this.max) return;
    throw badRequest(
      `This request may generate up to ${this.#reserved} tokens over its sequences; at most ` +
        `${this.max} per request (--max-output-tokens-per-request). Lower max_tokens or n.`,
      this.maxTokens === undefined ? "n" : "max_tokens",
    );
  }
}

export function planGeneration(
  sim: Simulator,
  params: GenerationParams,
  prompt: PromptInput,
  model: ResolvedModel,
  flags: GenerationFlags = {},
  budget?: OutputBudget,
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
  const echo = !flags.forceCacheThreshold && cfg.mode === "echo";
  const lengths = new Array<number>(params.n);
  const finishReasons = new Array<FinishReason>(params.n);
  // Echo choices share one token list; random ones draw their own text.
  const echoed = echo ? sim.tokenizer.pieces(prompt.echoText) : null;
  // Tool calls are drawn first, as the reference does: a choice with calls has no text.
  const calls = params.tools && !params.prefillOnly && !flags.forceCacheThreshold
    ? drawCalls(sim, params, rng)
    : undefined;
  const isText = calls ? (j: number) => !calls[j] : ALL_TEXT;
  // Recorded answers (datasets.md) for random-mode text, when a dataset is loaded.
  const recorded = sim.dataset && !echoed && !params.prefillOnly && !flags.forceCacheThreshold &&
      params.responseFormat === undefined && prompt.promptIds !== undefined
    ? new Array<DatasetPick | null>(params.n).fill(null)
    : null;
  const hash = recorded ? promptHash(prompt.promptIds!) : null;
  const recordedMax = params.maxTokens ?? maxModelLen - n;
  for (let i = 0; i < params.n; i++) {
    const mine = calls?.[i];
    if (mine) {
      lengths[i] = callTokens(mine);
      finishReasons[i] = "tool_calls";
    } else if (params.prefillOnly) {
      // Embeddings: no output; the choice ends with its prefill.
      lengths[i] = 0;
      finishReasons[i] = "stop";
    } else if (flags.forceCacheThreshold) {
      lengths[i] = 0;
      finishReasons[i] = "cache_threshold";
    } else if (echoed) {
      lengths[i] = echoed.length;
      finishReasons[i] = "stop";
    } else if (
      recorded && (recorded[i] = sim.dataset!.pick(hash!, recordedMax, params.ignoreEos, rng))
    ) {
      const pick = recorded[i]!;
      lengths[i] = pick.answer.strings.length + pick.pad;
      finishReasons[i] = lengths[i] === recordedMax ? "length" : "stop";
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
  const format = echoed || flags.forceCacheThreshold ? undefined : params.responseFormat;
  // A JSON answer may run to the context window when no max_tokens bounds it.
  const jsonLimit = params.maxTokens ?? Math.max(1, maxModelLen - n);
  if (budget) {
    let tokens = 0;
    lengths.forEach((len, j) => {
      tokens += !isText(j) ? len : format ? jsonLimit : params.maxTokens ?? len;
    });
    budget.take(tokens);
  }
  let text: Texts;
  if (params.prefillOnly) text = () => new TokenListStream([]);
  else if (echoed) {
    text = () => new TokenListStream(echoed);
  } else if (format) {
    text = jsonAnswers(sim, format, rng, jsonLimit, lengths, finishReasons, isText);
  } else {
    text = randomAnswers(rng, params.n, sim.tokenizer.sentences);
    if (recorded?.some((r) => r !== null)) text = recordedAnswers(recorded, text);
  }
  let stopReasons: (string | number | null)[] | undefined;
  if (params.stop && !params.prefillOnly && !flags.forceCacheThreshold) {
    const cut = applyStop(params.stop, sim.tokenizer, text, lengths, finishReasons, isText);
    text = cut.text;
    stopReasons = cut.reasons;
  }
  const spec: JobSpec = {
    lora: model.lora,
    promptTokens: n,
    // Set when the job starts and takes its KV blocks (the leading cached run).
    cachedTokens: 0,
    kv: kvPrompt(sim, prompt, model, params.cacheSalt),
    cacheHitThreshold: params.cacheHitThreshold,
    lengths,
    finishReasons,
    remotePrefill: params.kvTransfer?.do_remote_prefill === true,
    prefillOnly: params.prefillOnly,
    maxTokensParam: params.maxTokens ?? null,
    cfg,
    rng,
  };
  // The prefill side of P/D (the reference's rule): a normal answer whose
  // finish reason says the decode happens elsewhere.
  if (remoteDecode && !flags.forceCacheThreshold) finishReasons.fill("remote_decode");
  const kvTransferOut = remoteDecode
    ? (cfg["use-vllm-kv-transfer-params"] ? prefillParams(sim, n) : DUMMY_PREFILL_PARAMS)
    : null;
  return {
    promptTokens: n,
    choices: params.n,
    // Echoed text is the client's own; the built-in sentences need no escaping.
    jsonSafe: echoed === null && format === undefined && stopReasons === undefined &&
      recorded === null && sim.tokenizer.sentences.jsonSafe,
    text,
    spec,
    stopReasons,
    kvTransferOut,
    calls,
    keepPieces: params.logprobs !== undefined,
    recorded: recorded ?? undefined,
  };
}

/**
 * The token ids of token k of choice j, whose text is `text` (generate and
 * gRPC answer with ids): a dataset's answer gives its recorded ids, anything
 * else (built-in text, a recording's padding) the tokenizer's ids of the piece.
 */
export function tokenIdsAt(
  plan: GenerationPlan,
  j: number,
  tokenizer: Tokenizer,
): (text: string, k: number) => number[] {
  const recorded = plan.recorded?.[j]?.answer.ids;
  if (!recorded) return (text) => tokenizer.pieceIds(text);
  return (text, k) => k < recorded.length ? [recorded[k]] : tokenizer.pieceIds(text);
}

/** Each choice's tool calls (null: a text answer); undefined when no choice got any. */
function drawCalls(
  sim: Simulator,
  params: GenerationParams,
  rng: Rng,
): (GeneratedCall[] | null)[] | undefined {
  const cfg = sim.config;
  const limits = jsonValueLimits(cfg);
  const extra = cfg["tool-call-extra-call-probability"];
  let any = false;
  const out = Array.from({ length: params.n }, () => {
    const c = drawToolCalls(params.tools!, rng, limits, extra, sim.tokenizer);
    if (c.length === 0) return null;
    any = true;
    return c;
  });
  return any ? out : undefined;
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
function randomAnswers(rng: Rng, n: number, table: SentenceTable): Texts {
  if (n === 1) {
    const own = rng.fork();
    return (_j, peek) => new RandomTextStream(peek ? own.clone() : own, table);
  }
  const forks = Array.from({ length: n }, () => rng.fork());
  return (j, peek) => new RandomTextStream(peek ? forks[j].clone() : forks[j], table);
}

/**
 * response_format answers: JSON text that parses (json_object) or validates
 * against the schema (json_schema), drawn like tool arguments and cut at
 * `limit` tokens (max_tokens, else the context window) like any answer
 * (finish_reason length). A schema no value can satisfy, or one too large or
 * deep to work on, is a 400.
 */
function jsonAnswers(
  sim: Simulator,
  format: ResponseFormat,
  rng: Rng,
  limit: number,
  lengths: number[],
  finishReasons: FinishReason[],
  isText: (j: number) => boolean,
): (j: number) => TextStream {
  const schema = format.type === "json_schema" ? format.schema : JSON_OBJECT_SCHEMA;
  const problem = unsatisfiable(schema);
  if (problem !== null) {
    throw badRequest(`Invalid response_format schema: ${problem}`, "response_format");
  }
  // No much more string text than the answer can hold: generated strings are
  // words of at most 11 letters and a space, so 16 characters a token still
  // reaches the limit when the schema asks for more.
  const limits = { ...jsonValueLimits(sim.config), maxChars: limit * 16 };
  const answers: string[][] = [];
  for (let j = 0; j < lengths.length; j++) {
    if (!isText(j)) {
      answers.push([]);
      continue;
    }
    let json: string;
    try {
      json = JSON.stringify(randomJsonValue(schema, rng, limits));
    } catch (e) {
      // Native recursion past the stack on a hostile value: the client's fault.
      if (e instanceof RangeError) {
        throw badRequest("Invalid response_format schema: too deep to answer", "response_format");
      }
      throw e;
    }
    const pieces = sim.tokenizer.pieces(json);
    const cut = pieces.length > limit;
    answers.push(cut ? pieces.slice(0, limit) : pieces);
    lengths[j] = answers[j].length;
    finishReasons[j] = cut ? "length" : "stop";
  }
  return (j) => new TokenListStream(answers[j]);
}

/**
 * The prompt's KV blocks under the displayed model (the adapter's name for a
 * LoRA request); a prompt with more full blocks than the cache holds can
 * never run: a 400 now, not a wait for ever.
 */
function kvPrompt(
  sim: Simulator,
  prompt: PromptInput,
  model: ResolvedModel,
  cacheSalt?: string,
): KvPrompt | undefined {
  const kv = sim.kv;
  if (kv === null || prompt.promptIds === undefined) return undefined;
  const displayed = model.lora ?? sim.models.displayName;
  const mm = prompt.promptMm;
  const extras = mm?.length || cacheSalt ? { mm, cacheSalt } : undefined;
  const p = kv.prompt(prompt.promptIds, displayed, model.lora, extras);
  if (!kv.blocks.canEverFit(p)) {
    throw badRequest(
      `The prompt needs ${p.blocks.length} KV-cache blocks but the KV cache holds only ` +
        `${kv.blocks.capacity} blocks (kv-cache-size)`,
    );
  }
  return p;
}

/**
 * Choices with a recorded answer read its token strings, then (ignore_eos
 * past its end) the choice's built-in text; the others their built-in text.
 */
function recordedAnswers(recorded: readonly (DatasetPick | null)[], random: Texts): Texts {
  return (j, peek) => {
    const r = recorded[j];
    return r ? new ListThenStream(r.answer.strings, random(j, peek)) : random(j, peek);
  };
}

/** Every choice answers with text (no tool calls): no closure per request. */
const ALL_TEXT = () => true;

/** What json_object answers with: a small object of a known shape. */
const JSON_OBJECT_SCHEMA = {
  type: "object",
  properties: { answer: { type: "string" }, confidence: { type: "number" } },
  required: ["answer", "confidence"],
};

/**
 * `stop` and `stop_token_ids` (vLLM): each choice is read ahead on a copy of
 * its text. The answer ends at the first token that completes a stop string
 * (cut before the string) or that is a stop token (left out of the text);
 * include_stop_str_in_output keeps either. The tokens up to there still
 * count, as in vLLM. The text is not held: it is searched a block at a time, each stop
 * with one native search per block, keeping only the overlap a stop string
 * can straddle.
 */
function applyStop(
  rule: StopRule,
  tokenizer: Tokenizer,
  text: Texts,
  lengths: number[],
  finishReasons: FinishReason[],
  isText: (j: number) => boolean,
): { text: Texts; reasons: (string | number | null)[] } {
  const reasons = new Array<string | number | null>(lengths.length).fill(null);
  const limits = new Array<number>(lengths.length).fill(Infinity);
  const scan = new StopScan(rule, tokenizer);
  for (let j = 0; j < lengths.length; j++) {
    if (!isText(j)) continue;
    const hit = scan.run(text(j, true), lengths[j]);
    if (hit === null) continue;
    limits[j] = hit.chars;
    reasons[j] = hit.reason;
    lengths[j] = hit.tokens;
    finishReasons[j] = "stop";
  }
  return {
    text: (j) => limits[j] === Infinity ? text(j) : new CutTextStream(text(j), limits[j]),
    reasons,
  };
}

/** Characters gathered before the stop strings are searched (exported for the tests). */
export const STOP_BLOCK = 8192;

/** Where a stop ended an answer: its token count, its text length, and why. */
interface StopHit {
  tokens: number;
  chars: number;
  reason: string | number;
}

export class StopScan {
  readonly #ids: Set<number>;
  /** A piece's stop token, per distinct piece (answers reuse a small vocabulary). */
  readonly #idOf = new Map<string, number | null>();
  readonly #longest: number;

  constructor(private readonly rule: StopRule, private readonly tokenizer: Tokenizer) {
    this.#ids = new Set(rule.tokenIds);
    let longest = 0;
    for (const st of rule.strings) longest = Math.max(longest, st.length);
    this.#longest = longest;
  }

  #stopToken(piece: string): number | null {
    let id = this.#idOf.get(piece);
    if (id === undefined) {
      id = this.tokenizer.pieceIds(piece).find((x) => this.#ids.has(x)) ?? null;
      this.#idOf.set(piece, id);
    }
    return id;
  }

  /** The first stop in the next `length` tokens of `stream`, or null. */
  run(stream: TextStream, length: number): StopHit | null {
    let buf = ""; // the text from offset `base` of the answer on
    let base = 0;
    let searched = 0; // buf before this has been searched (overlap excepted)
    const ends: number[] = []; // answer offset where each token of buf's block ends
    let firstToken = 0; // token index of ends[0]
    for (let k = 0; k < length; k++) {
      const piece = stream.next();
      if (this.#ids.size > 0) {
        const id = this.#stopToken(piece);
        if (id !== null) {
          // A stop string completed earlier in this block wins over the token.
          const hit = this.#search(buf, base, searched, ends, firstToken);
          // vLLM leaves the stop token's text out unless include_stop_str_in_output.
          const chars = base + buf.length + (this.rule.includeStop ? piece.length : 0);
          return hit ?? { tokens: k + 1, chars, reason: id };
        }
      }
      buf += piece;
      ends.push(base + buf.length);
      if (buf.length - searched >= STOP_BLOCK || k === length - 1) {
        const hit = this.#search(buf, base, searched, ends, firstToken);
        if (hit) return hit;
        // Keep only what a stop string could still straddle.
        const keep = Math.min(buf.length, Math.max(this.#longest - 1, 0));
        base += buf.length - keep;
        buf = buf.slice(buf.length - keep);
        searched = 0;
        firstToken += ends.length;
        ends.length = 0;
      }
    }
    return null;
  }

  /** The stop completed first (earliest token, then list order) in the unsearched text. */
  #search(
    buf: string,
    base: number,
    searched: number,
    ends: readonly number[],
    firstToken: number,
  ): StopHit | null {
    let best: { token: number; at: number; stop: string } | null = null;
    for (const stop of this.rule.strings) {
      const at = buf.indexOf(stop, Math.max(0, searched - stop.length + 1));
      if (at < 0) continue;
      const end = base + at + stop.length;
      // The token whose text completes the match.
      let t = 0;
      while (t < ends.length && ends[t] < end) t++;
      const token = firstToken + t;
      // Stops completing at the same token: the first in the list wins (vLLM).
      if (best === null || token < best.token) {
        best = { token, at, stop };
      }
    }
    if (best === null) return null;
    return {
      tokens: best.token + 1,
      chars: base + best.at + (this.rule.includeStop ? best.stop.length : 0),
      reason: best.stop,
    };
  }
}

/** What the reference answers a prefill request with: placeholders, the same every time. */
const DUMMY_PREFILL_PARAMS: KvTransferParams = {
  do_remote_decode: false,
  do_remote_prefill: true,
  remote_engine_id: "DUMMY_ID",
  remote_block_ids: ["DUMMY_ID"],
  remote_host: "DUMMY",
  remote_port: 1234,
  tp_size: 1,
};

/** What vLLM's NIXL connector answers: this engine, its blocks, host and port. */
function prefillParams(sim: Simulator, promptTokens: number): KvTransferParams {
  return {
    do_remote_prefill: true,
    do_remote_decode: false,
    remote_engine_id: sim.engineId,
    // The blocks holding this prompt's KV cache, for the decode side to pull.
    remote_block_ids: Array.from(
      { length: Math.ceil(promptTokens / sim.config["block-size"]) },
      (_, i) => i,
    ),
    remote_host: sim.reachableHost,
    remote_port: sim.port,
    tp_size: 1,
  };
}
