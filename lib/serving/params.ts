import type { ToolPolicy } from "../tools/tool.ts";

/**
 * What a generation request asks of the engine, whatever API family it came
 * through: each family's protocol module parses its own body into these.
 */

export interface KvTransferParams {
  do_remote_decode?: boolean;
  do_remote_prefill?: boolean;
  remote_engine_id?: string | null;
  /** Block ids; the reference's placeholder answer is ["DUMMY_ID"]. */
  remote_block_ids?: (number | string)[] | null;
  remote_host?: string | null;
  remote_port?: number | null;
  tp_size?: number;
}

/** Where an answer must stop early (vLLM's `stop`, `stop_token_ids`). */
export interface StopRule {
  strings: readonly string[];
  tokenIds: readonly number[];
  /** include_stop_str_in_output: the matched stop string stays in the text. */
  includeStop: boolean;
}

/** response_format: the answer is JSON (an object, or a value of a schema). */
export type ResponseFormat =
  | { type: "json_object" }
  | { type: "json_schema"; schema: unknown };

/** Fields every generation request shares. */
export interface GenerationParams {
  model: string;
  stream: boolean;
  includeUsage: boolean;
  continuousUsage: boolean;
  /** max_completion_tokens (chat) or max_tokens; undefined = no limit. */
  maxTokens?: number;
  ignoreEos: boolean;
  n: number;
  seed?: number;
  cacheHitThreshold?: number;
  /** vLLM's cache_salt: with sha256_cbor it enters the first block's hash. */
  cacheSalt?: string;
  kvTransfer?: KvTransferParams;
  stop?: StopRule;
  responseFormat?: ResponseFormat;
  /** No output: the request takes its prefill time only (embeddings). */
  prefillOnly?: boolean;
  /** The tools an answer may call (set only when calls may be made). */
  tools?: ToolPolicy;
  /** Logprobs asked for: top entries per token, k ≥ 0 (absent: none). */
  logprobs?: number;
}

/** One prompt as the engine sees it. */
export interface PromptInput {
  promptTokens: number;
  /** The prompt's token ids, when something needs them (the KV cache's blocks). */
  promptIds?: readonly number[];
  /** Its multimodal items' placeholders and identifiers (a chat with media). */
  promptMm?: { offset: number; length: number; hash: string }[];
  /** What echo mode answers with. */
  echoText: string;
}

export interface GenerationFlags {
  /** X-Cache-Threshold-Finish-Reason: answer at once with no tokens. */
  forceCacheThreshold?: boolean;
  /** How errors name the request (the reference's "chat completion request (req id …)"). */
  label?: string;
}
