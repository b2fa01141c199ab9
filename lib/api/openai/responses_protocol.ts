/**
 * The OpenAI Responses request (`POST /v1/responses`), validated once on the
 * way in: `input` as typed items, `instructions`, `max_output_tokens`,
 * tools in shape. Parse failures use the reference's wording ("Failed to read
 * and parse request body, …"); unknown fields are ignored.
 */
import type { Config } from "../../config.ts";
import { parseToolChoice, type ToolDef, type ToolPolicy, toolPolicy } from "../../tools/tool.ts";
import { badRequest } from "../../errors.ts";
import type { GenerationParams } from "../../serving/params.ts";
import {
  isObject,
  type Json,
  type JsonObject,
  optNumber,
  optObject,
  optString,
} from "../../validate.ts";
import { parseCommon, topLogprobs } from "./protocol.ts";

/** A content part of a message item; `output_text` and type `""` are read as text. */
export type ResponsesPart =
  | { type: "text"; text: string }
  | { type: "image"; url: string }
  | { type: "audio"; data: string; format: string };

/** One `input` item. */
export type ResponsesItem =
  | { type: "message"; role: string; parts: ResponsesPart[] }
  | {
    type: "function_call";
    id: string;
    callId: string;
    name: string;
    arguments: string;
    status: string;
  }
  | { type: "function_call_output"; callId: string; output: string };

/** A function tool, normalised from the flat or the chat shape. */
export type ResponsesTool = ToolDef;

export interface ResponsesRequest extends GenerationParams {
  input: ResponsesItem[];
  /** Echoed in the answer when non-empty; never tokenized. */
  instructions: string;
  toolDefs: ResponsesTool[];
  /** `tool_choice` as sent (vLLM's answer echoes it). */
  toolChoice: Json | undefined;
  /** The displayed name of a base-model request: the first served name. */
  baseModel: string;
  /** Set with --use-vllm-responses-format: the answer is written in vLLM's shape. */
  vllm: VllmEcho | null;
}

/**
 * What vLLM's response object repeats of the request besides `instructions`,
 * `max_output_tokens` and `top_logprobs` (read from the fields above), each
 * as sent, absent or null when it was not (the writer puts in vLLM's default).
 */
export interface VllmEcho {
  /** The context window: vLLM's `max_output_tokens` is capped at what the prompt leaves. */
  maxModelLen: number;
  temperature: number | undefined;
  topP: number | undefined;
  metadata: Json | undefined;
  parallelToolCalls: Json | undefined;
  maxToolCalls: Json | undefined;
  previousResponseId: Json | undefined;
  reasoning: Json | undefined;
  serviceTier: Json | undefined;
  /** `text.format` and `text.verbosity`; undefined when the request has no `text`. */
  text: { format: Json | undefined; verbosity: Json | undefined } | undefined;
  truncation: Json | undefined;
  user: Json | undefined;
}

function vllmEcho(o: JsonObject, cfg: Config): VllmEcho {
  const text = optObject(o, "text");
  return {
    maxModelLen: cfg["max-model-len"],
    temperature: optNumber(o, "temperature"),
    topP: optNumber(o, "top_p"),
    metadata: o.metadata,
    parallelToolCalls: o.parallel_tool_calls,
    maxToolCalls: o.max_tool_calls,
    previousResponseId: o.previous_response_id,
    reasoning: o.reasoning,
    serviceTier: o.service_tier,
    text: text && { format: text.format, verbosity: text.verbosity },
    truncation: o.truncation,
    user: o.user,
  };
}

const PREFIX = "Failed to read and parse request body, ";

function parseError(message: string, param: string) {
  return badRequest(PREFIX + message, param);
}

/** A string field of an item or part: absent or null → "". */
function str(o: JsonObject, key: string, where: string): string {
  const v = o[key];
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw parseError(`${where}.${key} must be a string`, "input");
  return v;
}

function parsePart(p: unknown, where: string): ResponsesPart {
  if (!isObject(p)) throw parseError(`${where} must be an object`, "input");
  const type = p.type ?? "";
  switch (type) {
    case "":
    case "input_text":
    case "output_text":
      return { type: "text", text: str(p, "text", where) };
    case "input_image":
      return { type: "image", url: str(p, "image_url", where) };
    case "input_audio":
      return { type: "audio", data: str(p, "data", where), format: str(p, "format", where) };
    default:
      throw parseError(`unsupported input content type ${JSON.stringify(type)}`, "input");
  }
}

function parseContent(content: Json | undefined, where: string): ResponsesPart[] {
  if (content === undefined || content === null) return [];
  if (typeof content === "string") return [{ type: "text", text: content }];
  if (!Array.isArray(content)) {
    throw parseError(`${where}.content must be a string or an array of parts`, "input");
  }
  return content.map((p, j) => parsePart(p, `${where}.content[${j}]`));
}

function parseItem(raw: unknown, i: number): ResponsesItem {
  const where = `input[${i}]`;
  if (!isObject(raw)) throw parseError(`${where} must be an object`, "input");
  const type = raw.type ?? "";
  switch (type) {
    case "":
    case "message":
      return {
        type: "message",
        role: str(raw, "role", where),
        parts: parseContent(raw.content, where),
      };
    case "function_call":
      return {
        type: "function_call",
        id: str(raw, "id", where),
        callId: str(raw, "call_id", where),
        name: str(raw, "name", where),
        arguments: str(raw, "arguments", where),
        status: str(raw, "status", where),
      };
    case "function_call_output":
      return {
        type: "function_call_output",
        callId: str(raw, "call_id", where),
        output: str(raw, "output", where),
      };
    default:
      throw parseError(`unsupported input item type ${JSON.stringify(type)}`, "input");
  }
}

/** `input`: a string (one user message) or an array of items. */
export function parseInput(raw: Json | undefined): ResponsesItem[] {
  if (raw === undefined || raw === null) throw parseError("input is required", "input");
  if (typeof raw === "string") {
    return [{ type: "message", role: "user", parts: [{ type: "text", text: raw }] }];
  }
  if (!Array.isArray(raw)) throw parseError("input must be a string or array", "input");
  // Nothing to answer (the reference accepts it and renders an empty prompt).
  if (raw.length === 0) throw parseError("input must not be an empty array", "input");
  return raw.map(parseItem);
}

function checkToolType(type: Json | undefined): void {
  if (type === undefined || type === null || type === "" || type === "function") return;
  throw parseError(`unsupported tool type ${JSON.stringify(type)}`, "tools");
}

function toolParameters(v: Json | undefined): JsonObject | null {
  if (v === undefined || v === null) return null;
  if (!isObject(v)) throw parseError("tool parameters must be an object", "tools");
  return v;
}

function toolText(v: Json | undefined, key: string): string {
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw parseError(`tool ${key} must be a string`, "tools");
  return v;
}

/**
 * One tool: the chat shape `{type, function:{name, …}}` when it names a
 * function, else the flat `{type, name, description, parameters}`. Only
 * function tools exist here.
 */
function parseTool(raw: unknown): ResponsesTool {
  if (!isObject(raw)) throw parseError("invalid tool entry", "tools");
  const fn = raw.function;
  const nested = isObject(fn) && typeof fn.name === "string" && fn.name !== "" ? fn : null;
  checkToolType(raw.type);
  const o = nested ?? raw;
  const name = toolText(o.name, "name");
  if (name === "") throw parseError("tool name is required", "tools");
  return {
    name,
    description: toolText(o.description, "description"),
    parameters: toolParameters(o.parameters),
  };
}

export function parseTools(raw: Json | undefined): ResponsesTool[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw parseError("tools must be an array", "tools");
  return raw.map(parseTool);
}

/** `include` + `top_logprobs`: k when output_text logprobs are asked for (default 0). */
function parseLogprobs(o: JsonObject): number | undefined {
  const include = o.include;
  if (include !== undefined && include !== null) {
    if (!Array.isArray(include) || !include.every((x) => typeof x === "string")) {
      throw parseError("include must be an array of strings", "include");
    }
  }
  const k = topLogprobs(o, "top_logprobs");
  const wanted = Array.isArray(include) && include.includes("message.output_text.logprobs");
  return wanted ? k ?? 0 : undefined;
}

/**
 * Chat-only fields parseCommon would read: Responses has none of them
 * (no `n`, and only the global cache-hit threshold applies), so they are
 * dropped before it looks.
 */
const NOT_RESPONSES = [
  "n",
  "stream_options",
  "max_tokens",
  "max_completion_tokens",
  "cache_hit_threshold",
  "stop",
  "stop_token_ids",
  "response_format",
];

function withoutChatFields(o: JsonObject): JsonObject {
  if (!NOT_RESPONSES.some((k) => k in o)) return o;
  const copy = { ...o };
  for (const k of NOT_RESPONSES) delete copy[k];
  return copy;
}

export function parseResponsesRequest(body: unknown, cfg: Config): ResponsesRequest {
  if (!isObject(body)) throw badRequest("The request body must be a JSON object.");
  // The reference reads input and tools before it checks anything else.
  const input = parseInput(body.input);
  const tools = parseTools(body.tools);
  const common = parseCommon(withoutChatFields(body), ["max_output_tokens"]);
  const text = optObject(body, "text");
  if (text) optObject(text, "format"); // accepted and ignored: the answer is always text
  const req: ResponsesRequest = {
    ...common,
    n: 1,
    input,
    instructions: optString(body, "instructions") ?? "",
    toolDefs: tools,
    toolChoice: body.tool_choice ?? undefined,
    baseModel: cfg["served-model-name"][0] ?? cfg.model,
    vllm: cfg["use-vllm-responses-format"] ? vllmEcho(body, cfg) : null,
  };
  const policy = responsesToolPolicy(tools, body.tool_choice ?? undefined, input);
  if (policy) req.tools = policy;
  const logprobs = parseLogprobs(body);
  if (logprobs !== undefined) req.logprobs = logprobs;
  return req;
}

/**
 * At most one call; none once the input holds a tool's output (the agent's
 * loop ends with a message) or without tools; an omitted or `auto`
 * tool_choice becomes `required`, so a first tool turn always calls.
 */
function responsesToolPolicy(
  tools: ToolDef[],
  raw: Json | undefined,
  input: ResponsesItem[],
): ToolPolicy | undefined {
  const choice = parseToolChoice(raw);
  if (tools.length === 0 || input.some((i) => i.type === "function_call_output")) return undefined;
  const upgrade = raw === undefined || raw === "auto";
  return toolPolicy(tools, upgrade ? "required" : choice, 1);
}
