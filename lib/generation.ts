/**
 * Turns a validated generation request into a plan the engine can run: the
 * prompt's token count, each choice's output tokens and finish reason, and
 * the context-window check. Shared by every generation endpoint.
 */
import { echoTokens, randomText, responseLength } from "./content.ts";
import type { FinishReason, JobSpec } from "./engine.ts";
import { contextLengthError } from "./errors.ts";
import type { ResolvedModel } from "./models.ts";
import type { GenerationParams, KvTransferParams } from "./protocol.ts";
import type { Simulator } from "./simulator.ts";

export interface PlannedChoice {
  /**
   * The token strings, one per step, filled only when the answer is streamed
   * (a complete answer needs just `text` and `length`).
   */
  tokens: string[];
  /** The tokens joined: the choice's whole text. */
  text: string;
  /** Output tokens. */
  length: number;
  finishReason: FinishReason;
  /**
   * The text has nothing JSON must escape (it comes from the built-in
   * sentences, tests/content_test.ts checks them), so writing it into JSON
   * needs quotes only, not JSON.stringify (~0.5 µs for 100 tokens).
   */
  jsonSafe: boolean;
}

/** One prompt as the engine sees it. */
export interface PromptInput {
  promptTokens: number;
  /** What echo mode answers with. */
  echoText: string;
}

export interface GenerationFlags {
  /** X-Cache-Threshold-Finish-Reason: answer at once with no tokens. */
  forceCacheThreshold?: boolean;
}

export interface GenerationPlan {
  promptTokens: number;
  cachedTokens: number;
  choices: PlannedChoice[];
  spec: JobSpec;
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
  const choices: PlannedChoice[] = [];
  for (let i = 0; i < params.n; i++) {
    if (flags.forceCacheThreshold) {
      choices.push({
        tokens: [],
        text: "",
        length: 0,
        finishReason: "cache_threshold",
        jsonSafe: true,
      });
    } else if (remoteDecode) {
      // Prefill side of P/D: one token, then the decode side takes over.
      const t = randomText(rng, 1, params.stream);
      choices.push({
        tokens: t.tokens,
        text: t.text,
        length: t.length,
        finishReason: "remote_decode",
        jsonSafe: true,
      });
    } else if (cfg.mode === "echo") {
      const tokens = echoTokens(sim.tokenizer, prompt.echoText);
      choices.push({
        tokens,
        text: tokens.join(""),
        length: tokens.length,
        finishReason: "stop",
        jsonSafe: false, // the client's own text
      });
    } else {
      const len = responseLength(rng, {
        maxTokens: params.maxTokens,
        ignoreEos: params.ignoreEos,
        promptTokens: n,
        maxModelLen,
      });
      choices.push({
        ...randomText(rng, len.length, params.stream),
        finishReason: len.finishReason,
        jsonSafe: true,
      });
    }
  }
  const spec: JobSpec = {
    lora: model.lora,
    promptTokens: n,
    cachedTokens: 0,
    lengths: choices.map((c) => c.length),
    finishReasons: choices.map((c) => c.finishReason),
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
  return { promptTokens: n, cachedTokens: 0, choices, spec, kvTransferOut };
}
