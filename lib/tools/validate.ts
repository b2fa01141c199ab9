/**
 * Tool-definition validation (tools-and-logprobs.md): each tool is checked
 * against the reference's fixed JSON Schema with ajv, a maintained
 * validator. ajv is imported on the first request that has tools, so a
 * plain start never loads it; until then the check is a promise, after that
 * it answers at once.
 */
import { badRequest } from "../errors.ts";
import type { JsonObject } from "../validate.ts";
import type { ToolCheckCache } from "./checks.ts";
import type { ToolDef } from "./tool.ts";

type Check = (tool: JsonObject) => string | null;

/**
 * The compiled check, shared by every pod of the process: compiled code of
 * a constant schema, never changed once made.
 */
let compiled: Check | Promise<Check> | undefined;

function check(): Check | Promise<Check> {
  return compiled ??= import("ajv").then(({ Ajv }) => {
    const ajv = new Ajv({ strict: false });
    const validate = ajv.compile(TOOL_SCHEMA);
    const fn: Check = (tool) =>
      validate(tool) ? null : ajv.errorsText(validate.errors, { dataVar: "tool" });
    compiled = fn;
    return fn;
  });
}

/**
 * Throws the 400 "Tool validation failed: …" for the first tool that breaks
 * the rules; a promise only while ajv is being loaded.
 */
export function validateTools(
  tools: readonly ToolDef[],
  memo?: ToolCheckCache,
): void | Promise<void> {
  if (tools.length === 0) return;
  const rec = memo?.of(tools) ?? {};
  if (rec.invalid === undefined) {
    const c = check();
    if (c instanceof Promise) {
      return c.then((fn) => {
        rec.invalid = firstProblem(fn, tools);
        fail(rec.invalid);
      });
    }
    rec.invalid = firstProblem(c, tools);
  }
  fail(rec.invalid);
}

function fail(problem: string | null): void {
  if (problem !== null) throw badRequest(`Tool validation failed: ${problem}`, "tools");
}

function firstProblem(fn: Check, tools: readonly ToolDef[]): string | null {
  for (const t of tools) {
    let problem: string | null;
    try {
      problem = fn(asChecked(t));
    } catch (e) {
      // A schema nested past the stack: the client's fault, not a 500.
      if (!(e instanceof RangeError)) throw e;
      problem = "the parameters nest too deeply";
    }
    if (problem !== null) return problem;
  }
  return null;
}

/**
 * The function as the reference re-encodes it before the check: name,
 * description ("" when absent), parameters left out when absent or empty
 * (Go's omitempty on a map), so such a tool fails the required rule.
 */
function asChecked(t: ToolDef): JsonObject {
  const o: JsonObject = { name: t.name, description: t.description };
  if (t.parameters !== null && Object.keys(t.parameters).length > 0) o.parameters = t.parameters;
  return o;
}

const PARAM_TYPES = ["object", "array", "string", "number", "integer", "boolean", "null"];

/** `enum` items of a scalar type must be of that type. */
const enumOf = (type: string) => ({
  if: { properties: { type: { const: type } } },
  then: { properties: { enum: { type: "array", items: { type } } } },
});

/** The reference's schema for a tool's function (tools_utils.go), keyword for keyword. */
const TOOL_SCHEMA = {
  type: "object",
  properties: {
    name: { type: "string" },
    description: { type: "string" },
    parameters: { $ref: "#/$defs/param_definition" },
  },
  required: ["name", "description", "parameters"],
  additionalProperties: false,
  $defs: {
    param_definition: {
      type: "object",
      properties: {
        type: { type: "string", enum: PARAM_TYPES },
        description: { type: "string" },
        enum: { type: "array", items: { type: ["string", "number", "integer", "boolean"] } },
        properties: {
          type: "object",
          additionalProperties: { $ref: "#/$defs/param_definition" },
        },
        items: {
          anyOf: [
            { $ref: "#/$defs/param_definition" },
            { type: "array", items: { $ref: "#/$defs/param_definition" } },
          ],
        },
        required: { type: "array", items: { type: "string" } },
        additionalProperties: { type: "boolean" },
        minItems: { type: "integer", minimum: 0 },
        maxItems: { type: "integer", minimum: 0 },
        default: {},
        minimum: { type: "number" },
        maximum: { type: "number" },
        exclusiveMinimum: { type: ["number", "boolean"] },
        exclusiveMaximum: { type: ["number", "boolean"] },
        minLength: { type: "integer", minimum: 0 },
        maxLength: { type: "integer", minimum: 0 },
        pattern: { type: "string" },
        format: { type: "string" },
        title: { type: "string" },
      },
      required: ["type"],
      additionalProperties: false,
      allOf: [
        enumOf("string"),
        enumOf("number"),
        enumOf("integer"),
        enumOf("boolean"),
        {
          if: {
            anyOf: ["null", "object", "array"].map((t) => ({
              properties: { type: { const: t } },
            })),
          },
          then: { not: { required: ["enum"] } },
        },
        { if: { properties: { type: { const: "array" } } }, then: { required: ["items"] } },
        {
          if: { properties: { type: { const: "object" } } },
          then: { required: ["properties"] },
        },
      ],
    },
  },
};
