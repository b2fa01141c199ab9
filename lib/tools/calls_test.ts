import assert from "node:assert/strict";
import { Ajv } from "ajv";
import { Rng } from "../rng.ts";
import { BuiltinTokenizer } from "../tokenizer/builtin.ts";
import { type JsonValueLimits, jsonValueLimits } from "../json_value.ts";
import { loadConfig } from "../config.ts";
import { callTokens, checkToolPolicy, drawToolCalls } from "./calls.ts";
import type { ToolDef, ToolPolicy } from "./tool.ts";

/** The tool-call flags' defaults, from the option table. */
const LIMITS: JsonValueLimits = jsonValueLimits(loadConfig(["--model", "m"], {}).config);

const tokenizer = new BuiltinTokenizer();

/** Tools whose parameters use every keyword the arguments must honour. */
const TOOLS: ToolDef[] = [
  {
    name: "get_weather",
    description: "Weather in a city",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", minLength: 3, maxLength: 40 },
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
        days: { type: "integer", minimum: 1, maximum: 7 },
      },
      required: ["city"],
    },
  },
  {
    name: "bounds",
    description: "",
    parameters: {
      type: "object",
      properties: {
        big: { type: "integer", minimum: 500 },
        neg: { type: "number", exclusiveMaximum: -1, minimum: -3 },
        open: { type: "number", exclusiveMinimum: 99.5 },
        draft4: { type: "integer", minimum: 10, exclusiveMinimum: true, maximum: 11 },
        ratio: { type: "number", minimum: 0.25, maximum: 0.5 },
        long: { type: "string", minLength: 30 },
        short: { type: "string", maxLength: 2 },
        nothing: { type: "null" },
        flag: { type: "boolean" },
      },
      required: ["big", "neg", "open", "draft4", "ratio", "long", "short", "nothing", "flag"],
    },
  },
  {
    name: "nested",
    description: "objects in arrays in objects",
    parameters: {
      type: "object",
      properties: {
        items: {
          type: "array",
          minItems: 2,
          maxItems: 3,
          items: {
            type: "object",
            properties: {
              sku: { type: "string", enum: ["a<b", "c&d", "e>f"] },
              qty: { type: "integer", minimum: 1, maximum: 9 },
              tags: { type: "array", items: { type: "string" }, maxItems: 2 },
            },
            required: ["sku", "qty"],
            additionalProperties: false,
          },
        },
        address: {
          type: "object",
          properties: {
            street: { type: "string" },
            geo: {
              type: "object",
              properties: { lat: { type: "number", minimum: -90, maximum: 90 } },
              required: ["lat"],
            },
          },
          required: ["geo"],
        },
        fixed: { type: "string", const: "exactly this" },
      },
      required: ["items", "address", "fixed"],
    },
  },
  { name: "no_params", description: "", parameters: null },
  { name: "empty", description: "", parameters: { type: "object", properties: {} } },
];

/** Draft 4's boolean exclusive bounds in draft 6's numeric form, for ajv's default draft. */
function draft6(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(draft6);
  if (v === null || typeof v !== "object") return v;
  const o = Object.fromEntries(Object.entries(v).map(([k, x]) => [k, draft6(x)]));
  for (const [plain, ex] of [["minimum", "exclusiveMinimum"], ["maximum", "exclusiveMaximum"]]) {
    if (o[ex] === true) o[ex] = o[plain];
    if (o[ex] === false) delete o[ex];
  }
  return o;
}

const policy = (choice: ToolPolicy["choice"], tools = TOOLS, maxCalls = Infinity): ToolPolicy => ({
  tools,
  choice,
  maxCalls,
});

Deno.test("tool arguments validate against their tool's schema over many seeds (ajv)", () => {
  const ajv = new Ajv({ strict: false });
  const validators = new Map(
    TOOLS.map((t) => [t.name, ajv.compile(draft6(t.parameters ?? {}) as object)]),
  );
  let calls = 0;
  for (let seed = 0; seed < 400; seed++) {
    const rng = new Rng(seed);
    for (const call of drawToolCalls(policy("required"), rng, LIMITS, 60, tokenizer)) {
      calls++;
      const validate = validators.get(call.name)!;
      const args = JSON.parse(call.arguments);
      assert.ok(
        validate(args),
        `seed ${seed}: ${call.arguments} ${ajv.errorsText(validate.errors)}`,
      );
      assert.match(call.digits, /^\d{10}$/);
      assert.equal(call.pieces.join(""), call.arguments, "the pieces are the arguments");
    }
  }
  assert.ok(calls > 600, `${calls} calls checked`);
});

Deno.test("tool arguments: schema bounds replace the flags', as Go writes the JSON", () => {
  const bounds = [TOOLS[1]];
  for (let seed = 0; seed < 50; seed++) {
    const [call] = drawToolCalls(policy("required", bounds), new Rng(seed), LIMITS, 0, tokenizer);
    const a = JSON.parse(call.arguments);
    // minimum 500 lies beyond the flags' max (100): always 500.
    assert.equal(a.big, 500);
    assert.ok(a.neg >= -3 && a.neg < -1);
    assert.ok(a.open > 99.5 && a.open < 100);
    assert.equal(a.draft4, 11, "draft 4's boolean exclusiveMinimum excludes 10");
    assert.ok(a.long.length >= 30);
    assert.ok(a.short.length <= 2);
    assert.equal(a.nothing, null);
    // Go's encoding: keys in byte order, compact.
    assert.deepEqual(Object.keys(a), [...Object.keys(a)].sort());
    assert.ok(!/\s/.test(call.arguments.replaceAll(/"[^"]*"/g, "")));
  }
  const [nested] = drawToolCalls(policy({ name: "nested" }), new Rng(1), LIMITS, 0, tokenizer);
  assert.equal(JSON.parse(nested.arguments).fixed, "exactly this");
  // `<`, `>` and `&` escaped as Go does.
  const skus = new Set<string>();
  for (let seed = 0; seed < 30; seed++) {
    const [c] = drawToolCalls(policy({ name: "nested" }), new Rng(seed), LIMITS, 0, tokenizer);
    for (const m of c.arguments.matchAll(/"sku":"([^"]*)"/g)) skus.add(m[1]);
  }
  assert.deepEqual([...skus].sort(), ["a\\u003cb", "c\\u0026d", "e\\u003ef"]);
});

Deno.test("tool calls: the same seed gives the same calls; another seed other ones", () => {
  const draw = (seed: number) =>
    JSON.stringify(drawToolCalls(policy("required"), new Rng(seed), LIMITS, 60, tokenizer));
  assert.equal(draw(7), draw(7));
  assert.notEqual(draw(7), draw(8));
});

Deno.test("tool calls: how many (forced, required, auto, the extra-call roll, maxCalls)", () => {
  const count = (p: ToolPolicy, extra: number, seed: number) =>
    drawToolCalls(p, new Rng(seed), LIMITS, extra, tokenizer).length;
  const seen = { auto: new Set<number>(), required: new Set<number>() };
  for (let seed = 0; seed < 300; seed++) {
    const forced = drawToolCalls(policy({ name: "empty" }), new Rng(seed), LIMITS, 100, tokenizer);
    assert.equal(forced.length, 1, "a forced function: exactly one call");
    assert.equal(forced[0].name, "empty");
    assert.equal(forced[0].arguments, "{}");
    assert.equal(count(policy("auto"), 0, seed), 0, "auto with no extra calls: none");
    assert.equal(count(policy("required"), 0, seed), 1, "required: the minimum, one");
    assert.equal(count(policy("auto"), 100, seed), TOOLS.length, "capped at the tools");
    assert.equal(count(policy("required", TOOLS, 1), 100, seed), 1, "maxCalls");
    seen.auto.add(count(policy("auto"), 45, seed));
    seen.required.add(count(policy("required"), 45, seed));
  }
  // A truncated geometric count: every count from the minimum to the cap occurs.
  assert.deepEqual([...seen.auto].sort(), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual([...seen.required].sort(), [1, 2, 3, 4, 5]);
  // Each call picks a tool uniformly, with replacement: repeats happen.
  const names = drawToolCalls(policy("auto"), new Rng(3), LIMITS, 100, tokenizer).map((c) =>
    c.name
  );
  const repeats = Array.from(
    { length: 50 },
    (_, s) => drawToolCalls(policy("auto"), new Rng(s), LIMITS, 100, tokenizer).map((c) => c.name),
  ).filter((n) => new Set(n).size < n.length);
  assert.ok(names.length === TOOLS.length && repeats.length > 0);
});

Deno.test("tool calls: completion tokens are Σ (3 + argument tokens)", () => {
  const calls = drawToolCalls(policy("auto"), new Rng(4), LIMITS, 100, tokenizer);
  let expected = 0;
  for (const c of calls) expected += 3 + tokenizer.count(c.arguments);
  assert.equal(callTokens(calls), expected);
});

Deno.test("tool policy mistakes are 400s in the reference's words", () => {
  const label = "chat completion request (req id r1)";
  const problem = (p: ToolPolicy) => {
    try {
      checkToolPolicy(p, label);
      return null;
    } catch (e) {
      return [(e as { status: number }).status, (e as Error).message];
    }
  };
  assert.deepEqual(problem(policy("auto", [])), [
    400,
    `failed to create response for ${label} no tools available to create tool calls`,
  ]);
  assert.deepEqual(problem(policy({ name: "nope" })), [
    400,
    `failed to create response for ${label} tool with name 'nope' requested in tool_choice ` +
    "but not found in the tools list",
  ]);
  const bad: ToolDef = {
    name: "bad",
    description: "",
    parameters: {
      type: "object",
      properties: { a: { type: "array", items: { type: "string" }, minItems: 3, maxItems: 1 } },
    },
  };
  assert.deepEqual(problem(policy("auto", [bad])), [
    400,
    `failed to create response for ${label} minItems (3) is greater than maxItems(1)`,
  ]);
  assert.equal(problem(policy("required")), null);
});
