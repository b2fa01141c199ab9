/**
 * Anthropic Messages requests (`POST /v1/messages`, messages.md), validated
 * and converted to the neutral chat messages every family renders: system
 * prompt first, content blocks to text and image parts, `tool_use` blocks to
 * tool calls and `tool_result` blocks to `tool` messages. Sampling fields
 * Anthropic has (temperature, top_p, stop_sequences, …) are accepted and
 * ignored, as the reference does.
 */
import { type ToolChoice, type ToolDef, toolPolicy } from "../../tools/tool.ts";
import { type ChatMessage, textMessage, type ToolCall } from "../../chat.ts";
import type { MediaItem } from "../vllm/features.ts";
import { badRequest } from "../../errors.ts";
import type { GenerationParams } from "../../serving/params.ts";
import {
  isObject,
  type Json,
  type JsonObject,
  optBool,
  optInt,
  reqString,
} from "../../validate.ts";

export interface MessagesRequest extends GenerationParams {
  messages: ChatMessage[];
  /** The tools as defined (`input_schema` becomes `parameters`); undefined when absent. */
  toolDefs?: ToolDef[];
}

export function parseMessagesRequest(body: unknown): MessagesRequest {
  if (!isObject(body)) throw badRequest("The request body must be a JSON object.");
  const model = reqString(body, "model");
  const stream = optBool(body, "stream") ?? false;
  const raw = body.messages;
  if (raw === undefined || raw === null) {
    throw badRequest("'messages' is a required field.", "messages");
  }
  if (!Array.isArray(raw)) throw badRequest("'messages' must be an array.", "messages");
  const converted = convertMessages(raw);
  const system = systemText(body.system);
  const messages = system === "" ? converted : [systemMessage(system), ...converted];
  // The reference checks the converted list: a conversation of messages
  // that all convert to nothing is empty too.
  if (raw.length === 0 || converted.length === 0) {
    throw badRequest("messages must not be empty", "messages");
  }
  const maxTokens = optInt(body, "max_tokens", 1);
  if (maxTokens === undefined) throw badRequest("max_tokens is required", "max_tokens");
  const toolDefs = parseTools(body.tools);
  const req: MessagesRequest = {
    model,
    stream,
    includeUsage: false,
    continuousUsage: false,
    maxTokens,
    // Not Anthropic's, but the reference reads it on every family.
    ignoreEos: optBool(body, "ignore_eos") ?? false,
    n: 1,
    messages,
    toolDefs,
  };
  const policy = toolPolicy(toolDefs, parseToolChoice(body.tool_choice));
  if (policy) req.tools = policy;
  return req;
}

function systemMessage(text: string): ChatMessage {
  return textMessage("system", text);
}

/** `system`: a string, or (vllm-sim) text blocks joined by "\n". */
function systemText(raw: unknown): string {
  if (raw === undefined || raw === null) return "";
  if (typeof raw === "string") return raw;
  if (!Array.isArray(raw)) {
    throw badRequest("'system' must be a string or an array of text blocks.", "system");
  }
  return textOfBlocks(raw, "system");
}

/** The texts of `text` blocks joined by "\n"; other block types are skipped. */
function textOfBlocks(blocks: readonly Json[], where: string): string {
  const texts: string[] = [];
  for (let j = 0; j < blocks.length; j++) {
    const b = block(blocks[j], `${where}[${j}]`);
    if (b.type === "text") texts.push(blockText(b, `${where}[${j}]`));
  }
  return texts.join("\n");
}

/** A content block: an object with a string `type`. */
function block(raw: Json, where: string): JsonObject & { type: string } {
  if (!isObject(raw) || typeof raw.type !== "string") {
    throw badRequest(`${where} must be an object with a string 'type'.`, "messages");
  }
  return raw as JsonObject & { type: string };
}

function blockText(b: JsonObject, where: string): string {
  const t = b.text;
  if (t === undefined || t === null) return "";
  if (typeof t !== "string") throw badRequest(`${where}.text must be a string.`, "messages");
  return t;
}

/** A string field of a block ("" when absent). */
function blockString(b: JsonObject, key: string, where: string): string {
  const v = b[key];
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw badRequest(`${where}.${key} must be a string.`, "messages");
  return v;
}

/** Each Anthropic message, as zero or more chat messages. */
function convertMessages(raw: readonly Json[]): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (let i = 0; i < raw.length; i++) {
    const m = raw[i];
    const where = `messages[${i}]`;
    if (!isObject(m)) throw badRequest(`${where} must be an object.`, "messages");
    if (typeof m.role !== "string") {
      throw badRequest(`${where}.role must be a string.`, "messages");
    }
    const content = m.content;
    if (typeof content === "string") {
      // An empty string is no part: the message is left out, as in the reference.
      if (content !== "") out.push(textMessage(m.role, content));
    } else if (Array.isArray(content)) {
      convertBlocks(m.role, content, where, out);
    } else {
      throw badRequest(`${where}.content must be a string or an array of blocks.`, "messages");
    }
  }
  return out;
}

/**
 * A message's blocks: text and image parts and tool calls make one message
 * (only when it has any), then a `tool` message per tool_result.
 */
function convertBlocks(role: string, blocks: readonly Json[], where: string, out: ChatMessage[]) {
  const texts: string[] = [];
  const lines: string[] = []; // text and image parts, as the chat text shows them
  const media: MediaItem[] = [];
  const toolCalls: ToolCall[] = [];
  const results: ChatMessage[] = [];
  for (let j = 0; j < blocks.length; j++) {
    const at = `${where}.content[${j}]`;
    const b = block(blocks[j], at);
    switch (b.type) {
      case "text": {
        const t = blockText(b, at);
        texts.push(t);
        lines.push(t);
        break;
      }
      case "image": {
        // An image is an image_url part of the converted chat message.
        const url = imageSource(b, at);
        lines.push(`image: ${url}`);
        if (url !== "") media.push({ modality: "image", source: url });
        break;
      }
      case "tool_use":
        toolCalls.push(toolUse(b, at));
        break;
      case "tool_result":
        results.push(toolResult(b, at));
        break;
      default:
        // Other block types (document, thinking, …) are skipped, as in the reference.
        break;
    }
  }
  if (lines.length > 0 || toolCalls.length > 0) {
    const msg: ChatMessage = { role, content: lines.join("\n"), text: texts.join("\n") };
    if (media.length > 0) msg.media = media;
    if (toolCalls.length > 0) msg.toolCalls = toolCalls;
    out.push(msg);
  }
  for (const r of results) out.push(r);
}

/**
 * An image block's URL: `source.type` base64 → a data URL, otherwise
 * `source.url`: the chat text shows it as `image: <url>`. A block without a
 * source is refused as the reference does.
 */
function imageSource(b: JsonObject, where: string): string {
  const src = b.source;
  if (src === undefined || src === null) {
    throw badRequest("image content block is missing required 'source' field", "messages");
  }
  if (!isObject(src)) throw badRequest(`${where}.source must be an object.`, "messages");
  const at = `${where}.source`;
  if (blockString(src, "type", at) === "base64") {
    return `data:${blockString(src, "media_type", at)};base64,${blockString(src, "data", at)}`;
  }
  return blockString(src, "url", at);
}

/** An assistant's tool_use block: arguments are the JSON of `input` (`{}` when absent). */
function toolUse(b: JsonObject, where: string): ToolCall {
  const input = b.input;
  if (input !== undefined && input !== null && !isObject(input)) {
    throw badRequest(`${where}.input must be an object.`, "messages");
  }
  return {
    id: blockString(b, "id", where),
    name: blockString(b, "name", where),
    arguments: JSON.stringify(input ?? {}),
  };
}

/** A tool_result block: a `tool` message answering `tool_use_id`. */
function toolResult(b: JsonObject, where: string): ChatMessage {
  const c = b.content;
  let text = "";
  if (typeof c === "string") text = c;
  else if (Array.isArray(c)) text = textOfBlocks(c, `${where}.content`);
  else if (c !== undefined && c !== null) {
    throw badRequest(`${where}.content must be a string or an array of blocks.`, "messages");
  }
  return { ...textMessage("tool", text), toolCallId: blockString(b, "tool_use_id", where) };
}

/** `tools`: `{name, description, input_schema}` each. */
function parseTools(raw: unknown): ToolDef[] | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!Array.isArray(raw)) throw badRequest("'tools' must be an array.", "tools");
  return raw.map((t, i): ToolDef => {
    const where = `tools[${i}]`;
    if (!isObject(t)) throw badRequest(`${where} must be an object.`, "tools");
    if (typeof t.name !== "string" || t.name === "") {
      throw badRequest(`${where}.name must be a non-empty string.`, "tools");
    }
    const description = t.description ?? "";
    if (typeof description !== "string") {
      throw badRequest(`${where}.description must be a string.`, "tools");
    }
    const schema = t.input_schema;
    if (schema !== undefined && schema !== null && !isObject(schema)) {
      throw badRequest(`${where}.input_schema must be an object.`, "tools");
    }
    return { name: t.name, description, parameters: isObject(schema) ? schema : null };
  });
}

/**
 * `tool_choice` in chat's terms: `{type:"any"}` → required, `{type:"tool",
 * name}` → a forced function, `none`, and auto for everything else.
 */
function parseToolChoice(raw: unknown): ToolChoice {
  if (raw === undefined || raw === null) return "auto";
  if (!isObject(raw)) throw badRequest("'tool_choice' must be an object.", "tool_choice");
  const { type, name } = raw;
  if ((type ?? null) !== null && typeof type !== "string") {
    throw badRequest("tool_choice.type must be a string.", "tool_choice");
  }
  if ((name ?? null) !== null && typeof name !== "string") {
    throw badRequest("tool_choice.name must be a string.", "tool_choice");
  }
  switch (type) {
    case "any":
      return "required";
    case "none":
      return "none";
    case "tool": {
      if (typeof name !== "string" || name === "") {
        throw badRequest("tool_choice of type 'tool' requires a non-empty 'name'", "tool_choice");
      }
      return { name };
    }
  }
  // `auto`, and types the reference does not know, which it treats as auto.
  return "auto";
}
