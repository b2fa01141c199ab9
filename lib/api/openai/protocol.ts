/**
 * OpenAI-compatible request shapes, validated once on the way in. Handlers
 * get typed, normalised requests; anything malformed is a 400 naming the
 * field. Unknown fields are ignored, as vLLM does.
 */
import type { ChatMessage, ToolCall } from "../../chat.ts";
import { MAX_LOGPROBS } from "../../serving/logprobs.ts";
import { parseChatTools, parseToolChoice, type ToolDef, toolPolicy } from "../../tools/tool.ts";
import type { MediaItem } from "../vllm/features.ts";
import { badRequest } from "../../errors.ts";
import type {
  GenerationParams,
  KvTransferParams,
  ResponseFormat,
  StopRule,
} from "../../serving/params.ts";
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
} from "../../validate.ts";

export interface ChatRequest extends GenerationParams {
  messages: ChatMessage[];
  /** The function tools, as sent (a chat template renders them, the validation checks them). */
  toolDefs?: ToolDef[];
}

export type Prompt = { text: string } | { ids: number[] };

export interface CompletionRequest extends GenerationParams {
  prompts: Prompt[];
  echo: boolean;
}

function parseN(o: JsonObject): number {
  return optInt(o, "n", 1) ?? 1;
}

/** A sampling value vLLM checks: a 400 in its words when out of range. */
function checkSampling(o: JsonObject): void {
  const num = (key: string) => optNumber(o, key);
  const bad = (msg: string, key: string) => badRequest(msg, key);
  const t = num("temperature");
  if (t !== undefined && t < 0) {
    throw bad(`temperature must be non-negative, got ${t}.`, "temperature");
  }
  const p = num("top_p");
  if (p !== undefined && !(p > 0 && p <= 1)) {
    throw bad(`top_p must be in (0, 1], got ${p}.`, "top_p");
  }
  const k = num("top_k");
  if (k !== undefined && (!Number.isInteger(k) || (k < 1 && k !== 0 && k !== -1))) {
    throw bad(`top_k must be 0 (disable), or at least 1, got ${k}.`, "top_k");
  }
  const minP = num("min_p");
  if (minP !== undefined && !(minP >= 0 && minP <= 1)) {
    throw bad(`min_p must be in [0, 1], got ${minP}.`, "min_p");
  }
  for (const key of ["presence_penalty", "frequency_penalty"]) {
    const v = num(key);
    if (v !== undefined && !(v >= -2 && v <= 2)) {
      throw bad(`${key} must be in [-2, 2], got ${v}.`, key);
    }
  }
  const rp = num("repetition_penalty");
  if (rp !== undefined && !(rp > 0)) {
    throw bad(`repetition_penalty must be greater than zero, got ${rp}.`, "repetition_penalty");
  }
  const minTokens = o.min_tokens;
  if (minTokens !== undefined && minTokens !== null) {
    if (typeof minTokens !== "number" || !Number.isSafeInteger(minTokens) || minTokens < 0) {
      throw bad(
        `min_tokens must be greater than or equal to 0, got ${JSON.stringify(minTokens)}.`,
        "min_tokens",
      );
    }
  }
}

/** Bounds on `stop` (vLLM has none; OpenAI allows 4 strings). */
const MAX_STOPS = 64;
const MAX_STOP_LENGTH = 1024;

/** `stop`, `stop_token_ids`, `include_stop_str_in_output`; undefined when none is set. */
export function parseStop(o: JsonObject): StopRule | undefined {
  const raw = o.stop;
  let strings: string[] = [];
  if (typeof raw === "string") strings = [raw];
  else if (Array.isArray(raw)) {
    if (!raw.every((x) => typeof x === "string")) {
      throw badRequest("'stop' must be a string or an array of strings.", "stop");
    }
    strings = raw as string[];
  } else if (raw !== undefined && raw !== null) {
    throw badRequest("'stop' must be a string or an array of strings.", "stop");
  }
  if (strings.some((x) => x === "")) {
    throw badRequest("stop cannot contain an empty string.", "stop");
  }
  // Every answer is read ahead for its stops before it is queued: bounded work.
  if (strings.length > MAX_STOPS || strings.some((x) => x.length > MAX_STOP_LENGTH)) {
    throw badRequest(
      `stop: at most ${MAX_STOPS} strings of at most ${MAX_STOP_LENGTH} characters.`,
      "stop",
    );
  }
  const ids = o.stop_token_ids;
  let tokenIds: number[] = [];
  if (Array.isArray(ids)) {
    if (!ids.every(isTokenId)) {
      throw badRequest("'stop_token_ids' must be an array of token ids.", "stop_token_ids");
    }
    tokenIds = ids as number[];
  } else if (ids !== undefined && ids !== null) {
    throw badRequest("'stop_token_ids' must be an array of token ids.", "stop_token_ids");
  }
  const includeStop = optBool(o, "include_stop_str_in_output") ?? false;
  if (strings.length === 0 && tokenIds.length === 0) return undefined;
  return { strings, tokenIds, includeStop };
}

/** `response_format`: text (undefined), json_object, or json_schema with its schema. */
export function parseResponseFormat(o: JsonObject): ResponseFormat | undefined {
  const rf = optObject(o, "response_format");
  if (!rf) return undefined;
  switch (rf.type) {
    case "text":
    case "structural_tag":
      return undefined;
    case "json_object":
      return { type: "json_object" };
    case "json_schema": {
      const js = rf.json_schema;
      if (!isObject(js)) {
        throw badRequest(
          "response_format json_schema needs a 'json_schema' object.",
          "response_format",
        );
      }
      const schema = js.schema ?? js.json_schema;
      if (schema !== undefined && schema !== null && typeof schema !== "object") {
        throw badRequest(
          "response_format json_schema.schema must be an object.",
          "response_format",
        );
      }
      return { type: "json_schema", schema: schema ?? {} };
    }
    default:
      throw badRequest(
        `response_format type must be one of 'text', 'json_object', 'json_schema', got ${
          JSON.stringify(rf.type ?? null)
        }.`,
        "response_format",
      );
  }
}

/** The fields chat, completions and generate share. */
export function parseCommon(o: JsonObject, maxTokensKeys: string[]): GenerationParams {
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
  checkSampling(o);
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
    cacheSalt: optString(o, "cache_salt") || undefined,
    kvTransfer: kv ? parseKvTransfer(kv) : undefined,
    stop: parseStop(o),
    responseFormat: parseResponseFormat(o),
  };
}

export function parseKvTransfer(kv: JsonObject): KvTransferParams {
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

type MessageContent = Pick<ChatMessage, "content" | "text" | "media">;

/** A message's content: a string or an array of parts. */
function messageContent(content: unknown, i: number): MessageContent {
  if (content === undefined || content === null) return { content: "", text: "" };
  if (typeof content === "string") return { content, text: content };
  if (!Array.isArray(content)) {
    throw badRequest(`messages[${i}].content must be a string or an array of parts.`, "messages");
  }
  const lines: string[] = [];
  const texts: string[] = [];
  const media: MediaItem[] = [];
  for (const part of content) {
    if (!isObject(part) || typeof part.type !== "string") {
      throw badRequest(`messages[${i}].content parts must be objects with a 'type'.`, "messages");
    }
    if (part.type === "text") {
      if (typeof part.text !== "string") {
        throw badRequest(`messages[${i}].content text parts need a string 'text'.`, "messages");
      }
      lines.push(part.text);
      texts.push(part.text);
    } else if (part.type === "image_url") {
      const url = isObject(part.image_url) ? part.image_url.url : undefined;
      if (typeof url !== "string") {
        throw badRequest(
          `messages[${i}].content image_url parts need 'image_url.url'.`,
          "messages",
        );
      }
      lines.push(`image: ${url}`);
      if (url !== "") media.push({ modality: "image", source: url });
    } else if (part.type === "input_audio") {
      const data = isObject(part.input_audio) ? part.input_audio.data : undefined;
      if (typeof data === "string" && data !== "") media.push({ modality: "audio", source: data });
    } else if (part.type === "video_url") {
      const url = isObject(part.video_url) ? part.video_url.url : undefined;
      if (typeof url === "string" && url !== "") media.push({ modality: "video", source: url });
    }
    // Other part types are accepted and carry no text.
  }
  // Joined with a newline, as the reference renders them.
  const out: MessageContent = { content: lines.join("\n"), text: texts.join("\n") };
  if (media.length > 0) out.media = media;
  return out;
}

/** An assistant message's tool call: `{id, type:"function", function:{name, arguments}}`. */
function toolCall(c: unknown, i: number): ToolCall {
  const fn = isObject(c) ? c.function : undefined;
  if (!isObject(c) || !isObject(fn) || typeof fn.name !== "string") {
    throw badRequest(`messages[${i}].tool_calls entries need 'function.name'.`, "messages");
  }
  const args = fn.arguments;
  return {
    id: typeof c.id === "string" ? c.id : "",
    name: fn.name,
    arguments: typeof args === "string" ? args : JSON.stringify(args ?? {}),
  };
}

/** Chat `messages`: a non-empty array of {role, content, tool_calls?, tool_call_id?}. */
export function parseMessages(raw: unknown): ChatMessage[] {
  if (raw === undefined || raw === null) {
    throw badRequest("'messages' is a required field.", "messages");
  }
  if (!Array.isArray(raw)) throw badRequest("'messages' must be an array.", "messages");
  if (raw.length === 0) throw badRequest("'messages' must not be empty.", "messages");
  return raw.map((m, i): ChatMessage => {
    if (!isObject(m)) throw badRequest(`messages[${i}] must be an object.`, "messages");
    if (typeof m.role !== "string") {
      throw badRequest(`messages[${i}].role must be a string.`, "messages");
    }
    const msg: ChatMessage = { role: m.role, ...messageContent(m.content, i) };
    if (Array.isArray(m.tool_calls)) msg.toolCalls = m.tool_calls.map((c) => toolCall(c, i));
    if (typeof m.tool_call_id === "string") msg.toolCallId = m.tool_call_id;
    return msg;
  });
}

export function parseChatRequest(body: unknown): ChatRequest {
  if (!isObject(body)) throw badRequest("The request body must be a JSON object.");
  const common = parseCommon(body, ["max_completion_tokens", "max_tokens"]);
  const toolDefs = parseChatTools(body.tools);
  const req: ChatRequest = { ...common, messages: parseMessages(body.messages), toolDefs };
  const policy = toolPolicy(toolDefs, parseToolChoice(body.tool_choice));
  if (policy) req.tools = policy;
  if (optBool(body, "logprobs") === true) {
    req.logprobs = topLogprobs(body, "top_logprobs") ?? 1;
  } else topLogprobs(body, "top_logprobs"); // checked even when unused, as vLLM does
  return req;
}

/**
 * A count of top logprobs (chat and Responses `top_logprobs`, completions
 * `logprobs`): an integer from 0 to vLLM's max_logprobs (20).
 */
export function topLogprobs(o: JsonObject, key: string): number | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v)) {
    throw badRequest(`'${key}' must be an integer.`, key);
  }
  if (v < 0) throw badRequest(`\`${key}\` must be a non-negative value, got ${v}.`, key);
  if (v > MAX_LOGPROBS) {
    throw badRequest(
      `Requested sample logprobs of ${v}, which is greater than max allowed: ${MAX_LOGPROBS}`,
      key,
    );
  }
  return v;
}

export function parsePrompts(raw: unknown): Prompt[] {
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
  // Only k > 0 gives logprobs (the reference's rule).
  const k = topLogprobs(body, "logprobs");
  if (k !== undefined && k > 0) common.logprobs = k;
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
