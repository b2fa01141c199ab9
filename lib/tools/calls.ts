/**
 * Tool calls for one answer (tools-and-logprobs.md, "When and how many
 * calls" and "Arguments"): how many, which tools, and arguments drawn from
 * each tool's schema with the request's seeded stream, so the same request
 * under the same --seed makes the same calls. Family-neutral: each family
 * writes the calls (and prefixes their ids) its own way.
 */
import { badRequest } from "../errors.ts";
import { goJson, type JsonValueLimits, randomJsonValue, unsatisfiable } from "../json_value.ts";
import type { Rng } from "../rng.ts";
import type { Tokenizer } from "../tokenizer.ts";
import type { ToolCheckCache } from "./checks.ts";
import type { ToolDef, ToolPolicy } from "./tool.ts";

export interface GeneratedCall {
  /** 10 random decimal digits; the family adds its prefix (chatcmpl-tool-, toolu_, fc_/call_). */
  digits: string;
  name: string;
  /** The arguments' JSON text (Go's encoding: sorted keys, HTML characters escaped). */
  arguments: string;
  /** The arguments as output pieces, one per token: they concatenate to `arguments`. */
  pieces: string[];
}

/** Tokens a call counts for besides its arguments (name, id and type, as the reference counts). */
export const CALL_OVERHEAD_TOKENS = 3;

/** The completion tokens of a tool answer: Σ (3 + argument tokens). */
export function callTokens(calls: readonly GeneratedCall[]): number {
  let n = 0;
  for (const c of calls) n += CALL_OVERHEAD_TOKENS + c.pieces.length;
  return n;
}

/**
 * The calls of one answer (none: the answer is text). Forced function:
 * exactly one call of it. Otherwise a truncated geometric count from the
 * minimum (1 for required, else 0), capped by the tools and maxCalls, each
 * call a uniform pick with replacement.
 */
export function drawToolCalls(
  policy: ToolPolicy,
  rng: Rng,
  limits: JsonValueLimits,
  extraCallPercent: number,
  tokenizer: Tokenizer,
): GeneratedCall[] {
  const { choice } = policy;
  let tools = policy.tools;
  if (typeof choice === "object") tools = tools.filter((t) => t.name === choice.name).slice(0, 1);
  const max = Math.min(tools.length, policy.maxCalls);
  let count = Math.min(choice === "required" || typeof choice === "object" ? 1 : 0, max);
  while (count < max && rng.next() * 100 < extraCallPercent) count++;
  const calls: GeneratedCall[] = [];
  for (let i = 0; i < count; i++) {
    const tool = tools.length > 1 ? tools[rng.pickIndex(tools.length)] : tools[0];
    const args = goJson(toolArguments(tool, rng, limits));
    calls.push({
      digits: randomDigits(rng, 10),
      name: tool.name,
      arguments: args,
      pieces: tokenizer.pieces(args),
    });
  }
  return calls;
}

/**
 * The request's mistakes the reference finds only while making calls (and
 * answers with 500, "failed to create response for <request> <why>"): no
 * tools, a forced function not in the list, parameters no value satisfies.
 * The same words, as a 400, before anything is queued.
 */
export function checkToolPolicy(policy: ToolPolicy, label: string, memo?: ToolCheckCache): void {
  const fail = (why: string, param: string) =>
    badRequest(`failed to create response for ${label} ${why}`, param);
  const { tools, choice } = policy;
  if (tools.length === 0) throw fail("no tools available to create tool calls", "tools");
  if (typeof choice === "object" && !tools.some((t) => t.name === choice.name)) {
    throw fail(
      `tool with name '${choice.name}' requested in tool_choice but not found in the tools list`,
      "tool_choice",
    );
  }
  const rec = memo?.of(tools) ?? {};
  // null means checked and fine: `??=` would check again.
  if (rec.unsatisfiable === undefined) rec.unsatisfiable = firstUnsatisfiable(tools);
  if (rec.unsatisfiable !== null) throw fail(rec.unsatisfiable, "tools");
}

function firstUnsatisfiable(tools: readonly ToolDef[]): string | null {
  for (const t of tools) {
    const problem = t.parameters === null ? null : unsatisfiable(t.parameters);
    if (problem !== null) return problem;
  }
  return null;
}

/** The arguments object: `{}` when the tool has no parameters or no properties. */
function toolArguments(tool: ToolDef, rng: Rng, limits: JsonValueLimits): unknown {
  const p = tool.parameters;
  if (p === null || typeof p.properties !== "object" || p.properties === null) return {};
  try {
    return randomJsonValue(p, rng, limits);
  } catch (e) {
    // Native recursion past the stack on a hostile schema: the client's fault.
    if (e instanceof RangeError) {
      throw badRequest(`Invalid parameters of tool '${tool.name}': too deep to answer`, "tools");
    }
    throw e;
  }
}

function randomDigits(rng: Rng, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += String.fromCharCode(48 + rng.pickIndex(10));
  return s;
}
