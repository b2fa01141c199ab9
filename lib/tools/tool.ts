/**
 * Tools as every family's request defines them, in one shape: the chat
 * shape, Responses' flat shape and Anthropic's `input_schema` all become a
 * ToolDef, and each family's tool_choice becomes a ToolChoice. What the
 * pipeline then does with them (tools-and-logprobs.md) is the same for all.
 */
import { badRequest } from "../errors.ts";
import { isObject, type Json, type JsonObject } from "../validate.ts";

export interface ToolDef {
  name: string;
  /** "" when absent. */
  description: string;
  /** The JSON Schema of the arguments; null when absent. */
  parameters: JsonObject | null;
}

/** none, auto, required (at least one call) or a forced function (exactly one call of it). */
export type ToolChoice = "auto" | "required" | "none" | { name: string };

/**
 * What a request lets the model call: set only when calls may be made (the
 * request has `tools` and tool_choice is not none).
 */
export interface ToolPolicy {
  tools: readonly ToolDef[];
  choice: Exclude<ToolChoice, "none">;
  /** Calls one answer may hold at most (Responses: 1). */
  maxCalls: number;
}

/** The policy of a request, or undefined when it can make no call. */
export function toolPolicy(
  tools: readonly ToolDef[] | undefined,
  choice: ToolChoice,
  maxCalls = Infinity,
): ToolPolicy | undefined {
  if (tools === undefined || choice === "none") return undefined;
  return { tools, choice, maxCalls };
}

const PARSE = "Failed to read and parse request body, ";

/**
 * OpenAI's tool_choice (chat and Responses): a string (`none`, `required`,
 * anything else auto), a function by name (`{type:"function",
 * function:{name}}` or the flat `{type:"function", name}`), or `custom` /
 * `allowed_tools` (accepted, not enforced: auto).
 */
export function parseToolChoice(raw: Json | undefined): ToolChoice {
  if (raw === undefined || raw === null) return "auto";
  if (typeof raw === "string") return raw === "none" || raw === "required" ? raw : "auto";
  if (!isObject(raw)) {
    throw badRequest(`${PARSE}tool_choice must be a string or an object`, "tool_choice");
  }
  const type = typeof raw.type === "string" ? raw.type : "";
  switch (type) {
    case "function": {
      const fn = isObject(raw.function) ? raw.function : undefined;
      const nested = typeof fn?.name === "string" ? fn.name : "";
      const name = nested !== "" ? nested : typeof raw.name === "string" ? raw.name : "";
      if (name === "") {
        throw badRequest(`${PARSE}tool_choice function requires a name`, "tool_choice");
      }
      return { name };
    }
    case "custom":
    case "allowed_tools":
      return "auto";
    default:
      throw badRequest(`${PARSE}unknown ToolChoice type: ${type}`, "tool_choice");
  }
}

/**
 * Chat's `tools`: `[{type:"function", function:{name, description?,
 * parameters?}}]`. undefined when absent. Entries of another type are
 * accepted and left out (vLLM has no custom tools either).
 */
export function parseChatTools(raw: Json | undefined): ToolDef[] | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!Array.isArray(raw)) throw badRequest("'tools' must be an array.", "tools");
  const out: ToolDef[] = [];
  raw.forEach((t, i) => {
    const where = `tools[${i}]`;
    if (!isObject(t)) throw badRequest(`${where} must be an object.`, "tools");
    if (t.type !== undefined && t.type !== null && t.type !== "function") return;
    const fn = t.function;
    if (!isObject(fn) || typeof fn.name !== "string" || fn.name === "") {
      throw badRequest(`${where}.function.name must be a non-empty string.`, "tools");
    }
    const description = fn.description ?? "";
    if (typeof description !== "string") {
      throw badRequest(`${where}.function.description must be a string.`, "tools");
    }
    const parameters = fn.parameters ?? null;
    if (parameters !== null && !isObject(parameters)) {
      throw badRequest(`${where}.function.parameters must be an object.`, "tools");
    }
    out.push({ name: fn.name, description, parameters });
  });
  return out;
}

/** A tool as chat templates take it (transformers' JSON-schema form). */
export function templateTool(t: ToolDef): JsonObject {
  const fn: JsonObject = { name: t.name, description: t.description };
  if (t.parameters !== null) fn.parameters = t.parameters;
  return { type: "function", function: fn };
}
