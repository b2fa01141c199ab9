/**
 * Turns a validated generation request into a plan the engine can run: the
 * prompt's token count, each choice's output tokens and finish reason, and
 * the context-window check. Shared by every generation endpoint.
 */
import {
  echoTokens,
  RandomTextStream,
  responseLength,
  TextStream,
  TokenListStream,
} from "../content.ts";
import type { FinishReason, JobSpec } from "../engine.ts";
import { contextLengthError } from "../errors.ts";
import type { ResolvedModel } from "../models.ts";
import type {
  GenerationFlags,
  GenerationParams,
  KvTransferParams,
  PromptInput,
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
  if (params.maxTokens !== undefined ? n + params.maxTokens > maxModelLen : n >= maxModelLen) {
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
    if (flags.forceCacheThreshold) {
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
  // Choice 0 reads the request's stream; the others get streams forked from
  // it, all at once on first use, so the draws do not depend on the order in
  // which the choices are read.
  let forks: Rng[] | null = null;
  const text = (j: number): TextStream => {
    if (echoed) return new TokenListStream(echoed);
    if (params.n === 1) return new RandomTextStream(rng);
    forks ??= Array.from({ length: params.n }, (_, i) => i === 0 ? rng : rng.fork());
    return new RandomTextStream(forks[j]);
  };
  const spec: JobSpec = {
    lora: model.lora,
    promptTokens: n,
    cachedTokens: 0,
    lengths,
    finishReasons,
    remotePrefill: params.kvTransfer?.do_remote_prefill === true,
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
    jsonSafe: echoed === null,
    text,
    spec,
    kvTransferOut,
  };
}
