/**
 * OpenAI-compatible request shapes, validated once on the way in. Handlers
 * get typed, normalised requests; anything malformed is a 400 naming the
 * field. Unknown fields are ignored, as vLLM does.
 */
import { badRequest } from "./errors.ts";
import {
  isObject,
  isTokenId,
  type JsonObject,
  optBool,
  optInt,
  optNumber,
  optObject,
  optString,
  reqString,
} from "./validate.ts";

export interface KvTransferParams {
  do_remote_decode?: boolean;
  do_remote_prefill?: boolean;
  remote_engine_id?: string | null;
  remote_block_ids?: number[] | null;
  remote_host?: string | null;
  remote_port?: number | null;
  tp_size?: number;
}

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
  kvTransfer?: KvTransferParams;
}

export interface ChatMessage {
  role: string;
  /** Text parts joined; "" when there is none. */
  text: string;
  imageCount: number;
}

export interface ChatRequest extends GenerationParams {
  messages: ChatMessage[];
}

export type Prompt = { text: string } | { ids: number[] };

export interface CompletionRequest extends GenerationParams {
  prompts: Prompt[];
  echo: boolean;
}

function parseN(o: JsonObject): number {
  return optInt(o, "n", 1) ?? 1;
}

function parseCommon(o: JsonObject, maxTokensKeys: string[]): GenerationParams {
  const model = reqString(o, "model");
  const stream = optBool(o, "stream") ?? false;
  const so = optObject(o, "stream_options");
  if (so && !stream) {
    throw badRequest("Stream options can only be defined when `stream=True`.", "stream_options");
  }
  let maxTokens: number | undefined;
  // The first key present wins (chat: max_completion_tokens over max_tokens).
  for (const k of maxTokensKeys) {
    maxTokens ??= optInt(o, k, 1);
  }
  const kv = optObject(o, "kv_transfer_params");
  return {
    model,
    stream,
    includeUsage: so ? optBool(so, "include_usage") ?? false : false,
    continuousUsage: so ? optBool(so, "continuous_usage_stats") ?? false : false,
    maxTokens,
    ignoreEos: optBool(o, "ignore_eos") ?? false,
    n: parseN(o),
    seed: optInt(o, "seed", Number.MIN_SAFE_INTEGER),
    cacheHitThreshold: optNumber(o, "cache_hit_threshold", 0, 1),
    kvTransfer: kv ? parseKvTransfer(kv) : undefined,
  };
}

function parseKvTransfer(kv: JsonObject): KvTransferParams {
  return {
    do_remote_decode: optBool(kv, "do_remote_decode"),
    do_remote_prefill: optBool(kv, "do_remote_prefill"),
    remote_engine_id: optString(kv, "remote_engine_id") ?? null,
    remote_block_ids: Array.isArray(kv.remote_block_ids)
      ? kv.remote_block_ids.filter(isTokenId)
      : null,
    remote_host: optString(kv, "remote_host") ?? null,
    remote_port: optInt(kv, "remote_port", 0) ?? null,
    tp_size: optInt(kv, "tp_size", 1),
  };
}

/** Text of a message's content: a string or an array of parts. */
function messageContent(content: unknown, i: number): { text: string; imageCount: number } {
  if (content === undefined || content === null) return { text: "", imageCount: 0 };
  if (typeof content === "string") return { text: content, imageCount: 0 };
  if (!Array.isArray(content)) {
    throw badRequest(`messages[${i}].content must be a string or an array of parts.`, "messages");
  }
  const texts: string[] = [];
  let imageCount = 0;
  for (const part of content) {
    if (!isObject(part) || typeof part.type !== "string") {
      throw badRequest(`messages[${i}].content parts must be objects with a 'type'.`, "messages");
    }
    if (part.type === "text") {
      if (typeof part.text !== "string") {
        throw badRequest(`messages[${i}].content text parts need a string 'text'.`, "messages");
      }
      texts.push(part.text);
    } else if (part.type === "image_url") {
      const url = isObject(part.image_url) ? part.image_url.url : undefined;
      if (typeof url !== "string") {
        throw badRequest(
          `messages[${i}].content image_url parts need 'image_url.url'.`,
          "messages",
        );
      }
      imageCount++;
    }
    // Other part types (input_audio, video_url, ...) are accepted and carry no text.
  }
  // Joined with a space, as the reference simulator echoes them.
  return { text: texts.join(" "), imageCount };
}

export function parseChatRequest(body: unknown): ChatRequest {
  if (!isObject(body)) throw badRequest("The request body must be a JSON object.");
  const common = parseCommon(body, ["max_completion_tokens", "max_tokens"]);
  const raw = body.messages;
  if (raw === undefined || raw === null) {
    throw badRequest("'messages' is a required field.", "messages");
  }
  if (!Array.isArray(raw)) throw badRequest("'messages' must be an array.", "messages");
  if (raw.length === 0) throw badRequest("'messages' must not be empty.", "messages");
  const messages = raw.map((m, i): ChatMessage => {
    if (!isObject(m)) throw badRequest(`messages[${i}] must be an object.`, "messages");
    if (typeof m.role !== "string") {
      throw badRequest(`messages[${i}].role must be a string.`, "messages");
    }
    return { role: m.role, ...messageContent(m.content, i) };
  });
  return { ...common, messages };
}

function parsePrompts(raw: unknown): Prompt[] {
  if (raw === undefined || raw === null) {
    throw badRequest("'prompt' is a required field.", "prompt");
  }
  if (typeof raw === "string") {
    if (raw.length === 0) throw badRequest("'prompt' must not be empty.", "prompt");
    return [{ text: raw }];
  }
  if (!Array.isArray(raw)) {
    throw badRequest(
      "'prompt' must be a string, an array of strings, or an array of token ids.",
      "prompt",
    );
  }
  if (raw.length === 0) throw badRequest("'prompt' must not be empty.", "prompt");
  if (raw.every((p) => typeof p === "number")) {
    if (!raw.every(isTokenId)) {
      throw badRequest("'prompt' token ids must be non-negative integers.", "prompt");
    }
    return [{ ids: raw as number[] }];
  }
  return raw.map((p, i): Prompt => {
    if (typeof p === "string") {
      if (p.length === 0) throw badRequest(`prompt[${i}] must not be empty.`, "prompt");
      return { text: p };
    }
    if (Array.isArray(p)) {
      if (p.length === 0) throw badRequest(`prompt[${i}] must not be empty.`, "prompt");
      if (!p.every(isTokenId)) {
        throw badRequest(`prompt[${i}] token ids must be non-negative integers.`, "prompt");
      }
      return { ids: p as number[] };
    }
    throw badRequest(
      `prompt[${i}] must be a string or an array of token ids.`,
      "prompt",
    );
  });
}

/**
 * `maxPrompts`: more prompts than this are refused before any is looked at,
 * so a body of a million tiny prompts costs one comparison.
 */
export function parseCompletionRequest(body: unknown, maxPrompts = Infinity): CompletionRequest {
  if (!isObject(body)) throw badRequest("The request body must be a JSON object.");
  const common = parseCommon(body, ["max_tokens"]);
  const raw = body.prompt;
  if (Array.isArray(raw) && raw.length > maxPrompts && !raw.every((p) => typeof p === "number")) {
    throw badRequest(
      `Too many prompts: ${raw.length}; at most ${maxPrompts} per request ` +
        `(--max-sequences-per-request).`,
      "prompt",
    );
  }
  return { ...common, prompts: parsePrompts(raw), echo: optBool(body, "echo") ?? false };
}
