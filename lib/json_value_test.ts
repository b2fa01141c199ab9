import assert from "node:assert/strict";
// The named export: the default one does not type-check through Deno's CommonJS interop.
import { Ajv } from "ajv";
import { loadConfig } from "./config.ts";
import {
  goJson,
  type JsonValueLimits,
  jsonValueLimits,
  randomJsonValue,
  unsatisfiable,
} from "./json_value.ts";
import { Rng } from "./rng.ts";

const DEFAULTS: JsonValueLimits = {
  minInteger: 0,
  maxInteger: 100,
  minNumber: 0,
  maxNumber: 100,
  minArrayLength: 1,
  maxArrayLength: 5,
  optionalPropertyPercent: 50,
  optionalFieldPercent: 50,
};

/** Odd seeds use these, so that flags on both sides of the schema bounds are covered. */
const OTHER: JsonValueLimits = {
  minInteger: -1000,
  maxInteger: -900,
  minNumber: 1e6,
  maxNumber: 2e6,
  minArrayLength: 0,
  maxArrayLength: 2,
  optionalPropertyPercent: 100,
  optionalFieldPercent: 0,
};

const SEEDS = 50;

const SCHEMAS: Record<string, unknown> = {
  weather: {
    type: "object",
    properties: {
      location: { type: "string", description: "city" },
      unit: { type: "string", enum: ["celsius", "fahrenheit"] },
      days: { type: "integer", minimum: 1, maximum: 14 },
    },
    required: ["location"],
  },
  "integer bounds": { type: "integer", minimum: 3, maximum: 7 },
  "integer exclusive": { type: "integer", exclusiveMinimum: 3, exclusiveMaximum: 6 },
  "integer fractional bounds": { type: "integer", minimum: 2.5, maximum: 4.5 },
  "integer max below flags": { type: "integer", maximum: -10 },
  "integer huge range": { type: "integer", minimum: -1e15, maximum: 1e15 },
  "number exclusive": { type: "number", exclusiveMinimum: 0, exclusiveMaximum: 1 },
  "number min above flags": { type: "number", minimum: 1000 },
  "number exclusive min above flags": { type: "number", exclusiveMinimum: 1e7 },
  "number max below flags": { type: "number", exclusiveMaximum: -5 },
  "number single point": { type: "number", minimum: 2.5, maximum: 2.5 },
  "string lengths": { type: "string", minLength: 20, maxLength: 25 },
  "string short": { type: "string", maxLength: 3 },
  "string empty": { type: "string", maxLength: 0 },
  "array bounds": { type: "array", items: { type: "integer" }, minItems: 2, maxItems: 3 },
  "array min above flags": { type: "array", items: { type: "boolean" }, minItems: 7 },
  "array empty": { type: "array", items: { type: "string" }, maxItems: 0 },
  "array unique enum": {
    type: "array",
    items: { enum: [1, 2, 3] },
    uniqueItems: true,
    minItems: 2,
    maxItems: 3,
  },
  tuple: {
    type: "array",
    items: [{ type: "string" }, { type: "integer", minimum: 5, maximum: 5 }],
    additionalItems: false,
    minItems: 1,
  },
  "nested closed object": {
    type: "object",
    properties: {
      address: {
        type: "object",
        properties: {
          street: { type: "string", minLength: 5 },
          zip: { type: "string", maxLength: 5 },
          geo: {
            type: "object",
            properties: { lat: { type: "number", minimum: -90, maximum: 90 } },
            required: ["lat"],
            additionalProperties: false,
          },
        },
        required: ["street", "geo"],
        additionalProperties: false,
      },
    },
    required: ["address"],
    additionalProperties: false,
  },
  "array of objects": {
    type: "object",
    properties: {
      items: {
        type: "array",
        minItems: 1,
        items: {
          type: "object",
          properties: {
            sku: { type: "string" },
            qty: { type: "integer", minimum: 1, exclusiveMaximum: 10 },
            tags: { type: "array", items: { type: "string" }, maxItems: 2 },
          },
          required: ["sku", "qty"],
        },
      },
    },
    required: ["items"],
  },
  "type null": { type: "null" },
  "nullable string": { type: ["string", "null"], minLength: 2 },
  "null first": { type: ["null", "integer"], minimum: 40, maximum: 41 },
  "untyped properties": { properties: { a: { type: "boolean" } }, required: ["a"] },
  "untyped items": { items: { type: "number", maximum: -1 }, minItems: 1 },
  "untyped enum": { enum: ["x", 2, null, { k: [1] }] },
  "untyped empty": {},
  "typed enum with strays": { type: "string", enum: ["a", 1, "b", null] },
  const: { const: { a: 1, b: ["<&>"] } },
  anyOf: {
    anyOf: [{ type: "string", maxLength: 4 }, { type: "integer", minimum: -3, maximum: -1 }],
  },
  "oneOf overlapping": { oneOf: [{ type: "number" }, { type: "integer" }] },
  "oneOf disjoint": { oneOf: [{ type: "string" }, { type: "boolean" }, { type: "null" }] },
  allOf: { allOf: [{ type: "integer", minimum: 10 }, { maximum: 12 }] },
  "anyOf with siblings": {
    type: "object",
    properties: { a: { type: "string" }, b: { type: "integer" } },
    anyOf: [{ required: ["a"] }, { required: ["b"] }],
  },
  not: { type: "integer", minimum: 0, maximum: 3, not: { const: 2 } },
  "required via additionalProperties": {
    type: "object",
    properties: {},
    required: ["x"],
    additionalProperties: { type: "integer", minimum: 7, maximum: 8 },
  },
  "min and max properties": {
    type: "object",
    properties: { a: { type: "string" }, b: { type: "string" }, c: { type: "string" } },
    minProperties: 2,
    maxProperties: 2,
  },
  "object without properties": { type: "object" },
  "minProperties beyond the declared": {
    type: "object",
    properties: { a: { type: "integer" } },
    minProperties: 3,
    additionalProperties: { type: "boolean" },
  },
  "anyOf under additionalProperties": {
    type: "object",
    properties: { a: { type: "string" } },
    additionalProperties: { type: "integer", minimum: 1000 },
    anyOf: [{ properties: { b: { minimum: 0 } }, required: ["b"] }, { required: ["a"] }],
  },
  "nested anyOf with disjoint branch": {
    type: "array",
    items: {
      anyOf: [{ type: "string", minLength: 3 }, { type: "integer", maximum: -1 }],
      oneOf: [{ type: "string" }, { type: "boolean" }],
    },
  },
  "false optional property": {
    type: "object",
    properties: { gone: false, kept: { type: "integer" } },
    required: ["kept"],
  },
};

Deno.test("every generated value validates (ajv)", () => {
  const ajv = new Ajv({ strict: false });
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    assert.equal(unsatisfiable(schema), null, name);
    const validate = ajv.compile(schema as object);
    for (let seed = 0; seed < SEEDS; seed++) {
      const value = randomJsonValue(schema, new Rng(seed), seed % 2 ? OTHER : DEFAULTS);
      assert.ok(
        validate(value),
        `${name}, seed ${seed}: ${goJson(value)} ${ajv.errorsText(validate.errors)}`,
      );
    }
  }
});

/** Draft 4's boolean exclusive bounds in draft 6's numeric form, for ajv's default draft. */
function draft4ToDraft6(schema: Record<string, unknown>): Record<string, unknown> {
  const out = { ...schema };
  for (const [plain, ex] of [["minimum", "exclusiveMinimum"], ["maximum", "exclusiveMaximum"]]) {
    if (out[ex] === true) out[ex] = out[plain];
    if (typeof out[ex] !== "number") delete out[ex];
  }
  return out;
}

Deno.test("draft 4 boolean exclusive bounds", () => {
  const ajv = new Ajv({ strict: false });
  const schemas = [
    { type: "integer", minimum: 1, exclusiveMinimum: true, maximum: 3, exclusiveMaximum: true },
    { type: "number", minimum: 0, exclusiveMinimum: true, maximum: 1e-9, exclusiveMaximum: true },
    { type: "integer", minimum: 5, exclusiveMinimum: false, maximum: 5, exclusiveMaximum: false },
    { type: "integer", minimum: 100, exclusiveMinimum: true },
  ];
  for (const schema of schemas) {
    assert.equal(unsatisfiable(schema), null);
    const validate = ajv.compile(draft4ToDraft6(schema));
    for (let seed = 0; seed < SEEDS; seed++) {
      const value = randomJsonValue(schema, new Rng(seed), DEFAULTS);
      assert.ok(validate(value), `${JSON.stringify(schema)}, seed ${seed}: ${value}`);
    }
  }
  assert.equal(randomJsonValue(schemas[0], new Rng(1), DEFAULTS), 2);
  assert.equal(randomJsonValue(schemas[3], new Rng(1), DEFAULTS), 101);
});

Deno.test("same seed, same arguments", () => {
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    const a = goJson(randomJsonValue(schema, new Rng(42), DEFAULTS));
    const b = goJson(randomJsonValue(schema, new Rng(42), DEFAULTS));
    assert.equal(a, b, name);
  }
  const texts = new Set<string>();
  for (let seed = 0; seed < 20; seed++) {
    texts.add(goJson(randomJsonValue(SCHEMAS["array of objects"], new Rng(seed), DEFAULTS)));
  }
  assert.ok(texts.size > 10, "different seeds give different values");
});

Deno.test("a schema bound replaces the flag bound and clamps the other one", () => {
  const limits = { ...DEFAULTS, maxInteger: 100, maxNumber: 100 };
  for (let seed = 0; seed < SEEDS; seed++) {
    const rng = new Rng(seed);
    assert.equal(randomJsonValue({ type: "integer", minimum: 500 }, rng, limits), 500);
    assert.equal(randomJsonValue({ type: "number", minimum: 500 }, rng, limits), 500);
    assert.equal(randomJsonValue({ type: "integer", maximum: -5 }, rng, limits), -5);
    assert.equal(randomJsonValue({ type: "integer", exclusiveMinimum: 500 }, rng, limits), 501);
    const n = randomJsonValue({ type: "integer", minimum: 50 }, rng, limits) as number;
    assert.ok(n >= 50 && n <= 100, `${n}`);
  }
});

Deno.test("strings: one word, or words joined up to minLength and cut to maxLength", () => {
  const words = new Set([
    "testing",
    "hello",
    "Boston",
    "sunny",
    "temperature",
    "cloudy",
    "question",
    "Yorick",
    "silence",
    "lifetime",
  ]);
  for (let seed = 0; seed < SEEDS; seed++) {
    const word = randomJsonValue({ type: "string" }, new Rng(seed), DEFAULTS) as string;
    assert.ok(words.has(word), word);
    const long = randomJsonValue({ type: "string", minLength: 30 }, new Rng(seed), DEFAULTS);
    assert.ok((long as string).split(" ").every((w) => words.has(w)), `${long}`);
    const cut = randomJsonValue({ type: "string", maxLength: 2 }, new Rng(seed), DEFAULTS);
    assert.ok((cut as string).length <= 2);
  }
});

Deno.test("optional properties: top-level and nested percents", () => {
  const schema = {
    type: "object",
    properties: {
      top: { type: "string" },
      inner: { type: "object", properties: { field: { type: "string" } } },
    },
    required: ["inner"],
  };
  for (let seed = 0; seed < 10; seed++) {
    const limits = { ...DEFAULTS, optionalPropertyPercent: 0, optionalFieldPercent: 100 };
    const v = randomJsonValue(schema, new Rng(seed), limits) as Record<string, unknown>;
    assert.deepEqual(Object.keys(v), ["inner"]);
    assert.deepEqual(Object.keys(v.inner as object), ["field"]);
    const flipped = { ...DEFAULTS, optionalPropertyPercent: 100, optionalFieldPercent: 0 };
    const w = randomJsonValue(schema, new Rng(seed), flipped) as Record<string, unknown>;
    assert.deepEqual(Object.keys(w).sort(), ["inner", "top"]);
    assert.deepEqual(w.inner, {});
  }
});

Deno.test("unsatisfiable schemas are explained", () => {
  const cases: [unknown, string][] = [
    [
      { type: "array", items: { type: "string" }, minItems: 3, maxItems: 1 },
      "minItems (3) is greater than maxItems(1)",
    ],
    [
      { type: "object", properties: { a: { type: "array", items: {}, minItems: 2, maxItems: 0 } } },
      "minItems (2) is greater than maxItems(0)",
    ],
    [{ type: "string", minLength: 5, maxLength: 4 }, "minLength (5) is greater than maxLength(4)"],
    [{ type: "integer", minimum: 10, maximum: 9 }, "minimum (10) is greater than maximum(9)"],
    [
      { type: "number", minimum: 5, exclusiveMaximum: 5 },
      "minimum (5) is not less than exclusiveMaximum(5)",
    ],
    [
      { type: "integer", exclusiveMinimum: 2, exclusiveMaximum: 3 },
      "no integer lies between exclusiveMinimum (2) and exclusiveMaximum(3)",
    ],
    [
      { type: "integer", minimum: 2, exclusiveMinimum: true, maximum: 3, exclusiveMaximum: true },
      "no integer lies between exclusiveMinimum (2) and exclusiveMaximum(3)",
    ],
    [
      { type: "integer", minimum: 2.2, maximum: 2.8 },
      "no integer lies between minimum (2.2) and maximum(2.8)",
    ],
    [
      { type: "object", properties: { a: false }, required: ["a"] },
      'required property "a" admits no value',
    ],
    [
      { type: "object", properties: {}, required: ["b"], additionalProperties: false },
      'required property "b" is not allowed by additionalProperties',
    ],
    [{ type: "string", enum: [1, 2] }, "no enum value satisfies the rest of its schema"],
    [{ type: "string", const: 3 }, "const does not satisfy the rest of its schema"],
    [{ type: "date" }, "tool parameters of type date are not supported"],
    [
      {
        anyOf: [{ type: "string", minLength: 2, maxLength: 1 }, {
          type: "integer",
          minimum: 1,
          maximum: 0,
        }],
      },
      "minLength (2) is greater than maxLength(1)",
    ],
    [
      { type: "array", items: [{}], additionalItems: false, minItems: 2 },
      "minItems (2) is greater than the 1 items allowed",
    ],
    [false, "schema false admits no value"],
    [
      { type: "array", items: { type: "boolean" }, uniqueItems: true, minItems: 3 },
      "minItems (3) is more than the 2 distinct items allowed",
    ],
    [{ allOf: [{ type: "string" }, { type: "integer" }] }, "no type is allowed by every subschema"],
    [{ allOf: [{ const: 1 }, { const: 2 }] }, "no value satisfies every enum and const"],
    [{ type: "integer", not: {} }, "not excludes every value"],
    [
      { type: "object", properties: { a: {}, b: {} }, required: ["a", "b"], maxProperties: 1 },
      "maxProperties (1) is less than the 2 required properties",
    ],
  ];
  for (const [schema, message] of cases) {
    assert.equal(unsatisfiable(schema), message, goJson(schema));
  }
  // Satisfiable by another type, or by a value the contradiction does not apply to.
  assert.equal(unsatisfiable({ minLength: 3, maxLength: 1 }), null);
  assert.equal(unsatisfiable({ type: ["string", "integer"], minLength: 3, maxLength: 1 }), null);
  assert.equal(
    unsatisfiable({ anyOf: [{ type: "string", minLength: 3, maxLength: 1 }, { type: "null" }] }),
    null,
  );
  assert.equal(unsatisfiable(SCHEMAS["weather"]), null);
});

Deno.test("goJson: Go's key order and escapes", () => {
  assert.equal(goJson({ b: 1, a: [true, null], B: "x" }), '{"B":"x","a":[true,null],"b":1}');
  assert.equal(goJson("<a href='x'>&</a>"), "\"\\u003ca href='x'\\u003e\\u0026\\u003c/a\\u003e\"");
  assert.equal(goJson("\u2028\u2029\u007f"), '"\\u2028\\u2029\u007f"');
  assert.equal(goJson('q"\\\b\f\n\r\t\u0001'), '"q\\"\\\\\\b\\f\\n\\r\\t\\u0001"');
  assert.equal(goJson("\ud800x\udc00 \u{1f600}"), '"\\ufffdx\\ufffd \u{1f600}"');
  // UTF-8 order puts U+FFFF (EF BF BF) before U+10000 (F0 90 80 80); UTF-16 order does not.
  assert.equal(goJson({ "\u{10000}": 1, "\uffff": 2 }), '{"\uffff":2,"\u{10000}":1}');
  assert.equal(goJson([1e21, 1e-7, 0.000001, -0, 1.5, NaN]), "[1e+21,1e-7,0.000001,-0,1.5,null]");
  assert.equal(goJson({ a: undefined, "": {} }), '{"":{}}');
  const proto = JSON.parse('{"__proto__": 1}');
  assert.equal(goJson(proto), '{"__proto__":1}');
});

Deno.test("a property named __proto__ stays a property", () => {
  const schema = JSON.parse(
    '{"type":"object","properties":{"__proto__":{"type":"integer"}},"required":["__proto__"]}',
  );
  const v = randomJsonValue(schema, new Rng(1), DEFAULTS) as Record<string, unknown>;
  assert.ok(Object.hasOwn(v, "__proto__"));
  assert.equal(Object.getPrototypeOf(v), Object.prototype);
});

Deno.test("deep and explosive schemas stay bounded", () => {
  let deep: Record<string, unknown> = { type: "string" };
  for (let i = 0; i < 30; i++) deep = { type: "object", properties: { x: deep }, required: ["x"] };
  assert.equal(unsatisfiable(deep), null);
  assert.ok(goJson(randomJsonValue(deep, new Rng(1), DEFAULTS)).startsWith('{"x":{"x":'));
  for (let i = 0; i < 170; i++) deep = { type: "object", properties: { x: deep }, required: ["x"] };
  assert.equal(unsatisfiable(deep), "the schema nests deeper than 64 levels");

  let wide: Record<string, unknown> = { type: "integer" };
  for (let i = 0; i < 12; i++) wide = { type: "array", items: wide, minItems: 5, maxItems: 5 };
  const started = performance.now();
  randomJsonValue(wide, new Rng(1), DEFAULTS);
  assert.ok(performance.now() - started < 2000);

  // Nested combinators branch exponentially; the check budget cuts them short.
  let chain: Record<string, unknown> = { type: "integer", minimum: 2, maximum: 1 };
  for (let i = 0; i < 40; i++) chain = { anyOf: [chain, chain], oneOf: [chain, { not: chain }] };
  const t0 = performance.now();
  unsatisfiable(chain);
  randomJsonValue(chain, new Rng(1), DEFAULTS);
  assert.ok(performance.now() - t0 < 2000);
});

Deno.test("hostile schemas: refused by their shape, or bounded in size and time", () => {
  const t0 = performance.now();
  // Shapes that used to cost seconds to hours, or a 500 from native recursion.
  let nested: unknown = 1;
  for (let i = 0; i < 200_000; i++) nested = [nested];
  const refused: [unknown, string][] = [
    [{ const: nested }, "the schema nests deeper than 64 levels"],
    [
      { type: "integer", anyOf: Array(1500).fill({}), oneOf: Array(1500).fill({}) },
      "anyOf has more than 64 branches",
    ],
    [{ enum: Array.from({ length: 3000 }, (_, i) => i) }, "enum has more than 1000 values"],
    [
      {
        type: "object",
        properties: Object.fromEntries(Array.from({ length: 25_000 }, (_, i) => [`p${i}`, {}])),
      },
      "the schema has more than 20000 nodes",
    ],
  ];
  for (const [schema, message] of refused) assert.equal(unsatisfiable(schema), message);
  // 64 × 64 branch pairs, and two 1 000-value enums merged: fast.
  const pairs = {
    type: "integer",
    minimum: 5,
    maximum: 1,
    anyOf: Array(64).fill({}),
    oneOf: Array(64).fill({}),
  };
  unsatisfiable(pairs);
  const enums = {
    allOf: [
      { enum: Array.from({ length: 1000 }, (_, i) => i) },
      { enum: Array.from({ length: 1000 }, (_, i) => i + 500) },
    ],
  };
  assert.equal(unsatisfiable(enums), null); // 500..999 are in both
  // -0 and 0 are one value for enum equality.
  assert.equal(unsatisfiable({ allOf: [{ enum: [0, 1] }, { enum: [-0, -1] }] }), null);
  randomJsonValue(enums, new Rng(1), DEFAULTS);
  // Strings stop growing at the character budget.
  const big = { type: "array", minItems: 200, items: { type: "string", minLength: 100_000 } };
  const text = goJson(randomJsonValue(big, new Rng(1), { ...DEFAULTS, maxChars: 50_000 }));
  assert.ok(text.length < 60_000, `${text.length} characters`);
  assert.ok(performance.now() - t0 < 3000, `${performance.now() - t0} ms`);
});

Deno.test("jsonValueLimits reads the tool-call flags", () => {
  const { config } = loadConfig([
    "--model",
    "m",
    "--min-tool-call-integer-param",
    "-3",
    "--max-tool-call-number-param",
    "7.5",
    "--tool-call-not-required-param-probability",
    "10",
    "--object-tool-call-not-required-field-probability",
    "90",
  ], {});
  assert.deepEqual(jsonValueLimits(config), {
    ...DEFAULTS,
    minInteger: -3,
    maxNumber: 7.5,
    optionalPropertyPercent: 10,
    optionalFieldPercent: 90,
  });
});
