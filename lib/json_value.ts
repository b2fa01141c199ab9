/**
 * Random JSON values for a JSON Schema (tools-and-logprobs.md "Arguments"):
 * tool-call arguments that validate against the tool's `parameters`, drawn
 * only from the caller's seeded Rng so that runs replay under --seed.
 *
 * Honoured: type (also as a list), enum, const, properties, required,
 * additionalProperties, items (also as a tuple), additionalItems, minItems,
 * maxItems, minimum, maximum, exclusiveMinimum, exclusiveMaximum (numeric and
 * draft 4's boolean form), minLength, maxLength, min/maxProperties, allOf and
 * anyOf. Best effort (a bounded number of redraws): oneOf whose branches
 * overlap, not, uniqueItems. `pattern` and `format` are not generated for.
 * $ref is not resolved (such a schema is treated as untyped).
 */
import type { Config } from "./config.ts";
import type { Rng } from "./rng.ts";

export interface JsonValueLimits {
  /** min-tool-call-integer-param */
  minInteger: number;
  /** max-tool-call-integer-param */
  maxInteger: number;
  /** min-tool-call-number-param */
  minNumber: number;
  /** max-tool-call-number-param */
  maxNumber: number;
  /** min-tool-call-array-param-length */
  minArrayLength: number;
  /** max-tool-call-array-param-length */
  maxArrayLength: number;
  /** tool-call-not-required-param-probability (properties of the top-level object) */
  optionalPropertyPercent: number;
  /** object-tool-call-not-required-field-probability (fields of nested objects) */
  optionalFieldPercent: number;
  /**
   * Characters of strings one value may hold (an answer is cut at its token
   * limit anyway); default 1 Mi.
   */
  maxChars?: number;
}

/** Limits from a Config. */
export function jsonValueLimits(cfg: Config): JsonValueLimits {
  return {
    minInteger: cfg["min-tool-call-integer-param"],
    maxInteger: cfg["max-tool-call-integer-param"],
    minNumber: cfg["min-tool-call-number-param"],
    maxNumber: cfg["max-tool-call-number-param"],
    minArrayLength: cfg["min-tool-call-array-param-length"],
    maxArrayLength: cfg["max-tool-call-array-param-length"],
    optionalPropertyPercent: cfg["tool-call-not-required-param-probability"],
    optionalFieldPercent: cfg["object-tool-call-not-required-field-probability"],
  };
}

/** The reference's string vocabulary. */
const WORDS = [
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
] as const;

/** Nesting beyond this gets a stub value (guards the stack against hostile schemas). */
const MAX_DEPTH = 32;
/** Draws per value before settling for the last one (never loop forever). */
const MAX_REDRAWS = 16;
/** Values built per call before optional parts are left out (nested arrays grow exponentially). */
const SOFT_BUDGET = 10_000;
/** Values built per call before everything left becomes null. */
const HARD_BUDGET = 50_000;
/**
 * Checks one unsatisfiable() call, or one generation's branch choices, may make:
 * nested combinators can branch exponentially. Past it a schema counts as satisfiable.
 */
const MAX_CHECKS = 50_000;
/** Larger minItems / minLength are reported by unsatisfiable() rather than built. */
const MAX_MIN_ITEMS = 10_000;
const MAX_MIN_LENGTH = 100_000;

type Schema = Record<string, unknown>;

/** Checks made so far against MAX_CHECKS. */
interface Work {
  checks: number;
}

/** Per-call state: the stream, the limits and the budgets used so far. */
interface Ctx extends Work {
  readonly rng: Rng;
  readonly limits: JsonValueLimits;
  used: number;
  /** String characters left to write: a value never grows past what an answer can hold. */
  chars: number;
}

/** Characters of strings one value may hold when the caller sets no bound. */
const DEFAULT_MAX_CHARS = 1 << 20;

/** A value that validates against `schema`, drawn from rng. Properties visited in schema order. */
export function randomJsonValue(schema: unknown, rng: Rng, limits: JsonValueLimits): unknown {
  const chars = limits.maxChars ?? DEFAULT_MAX_CHARS;
  return generate(schema, { rng, limits, used: 0, checks: 0, chars }, 0, true);
}

/**
 * Why no value can satisfy `schema` (a message like the reference's, e.g.
 * "minItems (3) is greater than maxItems(1)"), or null. Checks recursively:
 * a contradiction anywhere in properties, items or combinator branches counts.
 */
export function unsatisfiable(schema: unknown): string | null {
  return shapeProblem(schema) ?? problem(schema, 0, { checks: 0 });
}

/** Schema nodes (objects, arrays and values) one schema may have. */
const MAX_NODES = 20_000;
/** Branches of one anyOf / oneOf / allOf (their pairs are checked against each other). */
const MAX_BRANCHES = 64;
/** Values of one enum. */
const MAX_ENUM = 1_000;
/** JSON nesting of a schema: a schema level is two (`properties`, then the name). */
const MAX_JSON_DEPTH = 2 * MAX_DEPTH;

/**
 * A schema too large or too deep to work on (a client's, so bounded before
 * anything recursive touches it): depth counts every nested value, const and
 * enum contents included. Walked with an explicit stack, never recursion.
 */
function shapeProblem(schema: unknown): string | null {
  const stack: [unknown, number][] = [[schema, 0]];
  let nodes = 0;
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (++nodes > MAX_NODES) return `the schema has more than ${MAX_NODES} nodes`;
    if (depth > MAX_JSON_DEPTH) return `the schema nests deeper than ${MAX_JSON_DEPTH} levels`;
    if (Array.isArray(v)) {
      for (const x of v) stack.push([x, depth + 1]);
    } else if (isObject(v)) {
      for (const key of ["anyOf", "oneOf", "allOf"]) {
        const list = v[key];
        if (Array.isArray(list) && list.length > MAX_BRANCHES) {
          return `${key} has more than ${MAX_BRANCHES} branches`;
        }
      }
      if (Array.isArray(v.enum) && v.enum.length > MAX_ENUM) {
        return `enum has more than ${MAX_ENUM} values`;
      }
      for (const x of Object.values(v)) stack.push([x, depth + 1]);
    }
  }
  return null;
}

// ---------- small helpers ----------

const isObject = (v: unknown): v is Schema =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** A finite number, or null. */
const num = (v: unknown): number | null => typeof v === "number" && Number.isFinite(v) ? v : null;

/** A count keyword's value (minItems, maxLength, …): a finite number ≥ 0, or null. */
function count(v: unknown): number | null {
  const n = num(v);
  return n !== null && n >= 0 ? n : null;
}

/** -0 → 0: the reference emits Go ints, which have no negative zero. */
const noNegZero = (n: number): number => n === 0 ? 0 : n;

/** Sets an own property; a plain assignment to "__proto__" would replace the prototype. */
function put(obj: Schema, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function without(s: Schema, key: string): Schema {
  const out = { ...s };
  delete out[key];
  return out;
}

const strings = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];

/** A schema as an object: `true` and junk mean "anything"; `false` stays false. */
const asSchema = (v: unknown): Schema | false => v === false ? false : isObject(v) ? v : {};

/** A non-empty enum, or null (an empty one is ignored, as the reference does). */
const enumList = (s: Schema): unknown[] | null =>
  Array.isArray(s.enum) && s.enum.length > 0 ? s.enum : null;

/** Equality of JSON values (object key order does not matter). */
const sameJson = (a: unknown, b: unknown): boolean => goJson(a) === goJson(b);

/** A `rate`% roll; always draws so that the stream does not depend on the rate. */
const roll = (rng: Rng, rate: number): boolean => rng.next() * 100 < rate;

// ---------- numeric bounds ----------

interface Bound {
  value: number;
  exclusive: boolean;
  /** The keyword the bound came from, for messages. */
  name: string;
}

const lowerBound = (s: Schema): Bound | null => bound(s, "minimum", "exclusiveMinimum", 1);
const upperBound = (s: Schema): Bound | null => bound(s, "maximum", "exclusiveMaximum", -1);

/**
 * The tighter of `plainKey` and `exKey` on one side (`dir` 1 for a lower bound,
 * −1 for an upper one). Draft 4's boolean `exKey` makes `plainKey` exclusive.
 */
function bound(s: Schema, plainKey: string, exKey: string, dir: number): Bound | null {
  const plain = num(s[plainKey]);
  const ex = s[exKey];
  let b: Bound | null = plain === null
    ? null
    : { value: plain, exclusive: ex === true, name: ex === true ? exKey : plainKey };
  const exNum = num(ex);
  if (exNum !== null && (b === null || (exNum - b.value) * dir >= 0)) {
    b = { value: exNum, exclusive: true, name: exKey };
  }
  return b;
}

/** The smallest integer a lower bound allows. */
const intLow = (b: Bound): number => b.exclusive ? Math.floor(b.value) + 1 : Math.ceil(b.value);
/** The largest integer an upper bound allows. */
const intHigh = (b: Bound): number => b.exclusive ? Math.ceil(b.value) - 1 : Math.floor(b.value);

/**
 * Spec: a schema bound replaces the flag bound on its side; a flag bound that
 * then lies beyond the other side's schema bound is clamped to it.
 */
function clampRange(
  schemaLo: number | null,
  schemaHi: number | null,
  flagLo: number,
  flagHi: number,
): [number, number] {
  let lo = schemaLo ?? flagLo;
  let hi = schemaHi ?? flagHi;
  if (schemaLo === null && lo > hi) lo = hi;
  if (schemaHi === null && hi < lo) hi = lo;
  return [lo, hi];
}

// ---------- kinds ----------

/** A `type` keyword as a list, or null when absent or malformed. */
function typeList(t: unknown): string[] | null {
  if (typeof t === "string") return [t];
  return Array.isArray(t) ? strings(t) : null;
}

/**
 * The kinds a value may take, preferred first: the listed types (null last),
 * or for an untyped schema the kind its keywords suggest, then string.
 */
function candidateKinds(s: Schema): string[] {
  const listed = typeList(s.type);
  // An empty list comes from merging branches whose types are disjoint: no kind.
  if (listed !== null) {
    return [...listed.filter((k) => k !== "null"), ...listed.filter((k) => k === "null")];
  }
  const inferred = isObject(s.properties) ? "object" : "items" in s ? "array" : "string";
  return inferred === "string" ? ["string", "null"] : [inferred, "string", "null"];
}

/** The first candidate kind this schema's own keywords leave a value for. */
function chooseKind(s: Schema): string {
  const kinds = candidateKinds(s);
  if (kinds.length === 1) return kinds[0];
  return kinds.find((k) => kindProblem(s, k) === null) ?? kinds[0] ?? "none";
}

// ---------- unsatisfiable ----------

function problem(raw: unknown, depth: number, work: Work): string | null {
  if (depth > MAX_DEPTH || ++work.checks > MAX_CHECKS) return null;
  if (raw === false) return "schema false admits no value";
  if (!isObject(raw)) return null;
  return ownProblem(raw, depth, work) ?? childProblem(raw, depth, work);
}

/** A contradiction among this schema's own keywords (sub-schemas are childProblem's). */
function ownProblem(s: Schema, depth: number, work: Work): string | null {
  if (depth > MAX_DEPTH) return null;
  if (hasCombinator(s)) return combinatorProblem(s, depth, work);
  // A client's (generation ignores it, as the reference does) or merged branches' that share no value.
  if (Array.isArray(s.enum) && s.enum.length === 0) {
    return "no value satisfies every enum and const";
  }
  if ("const" in s) {
    return matches(s.const, without(s, "const"), depth, work)
      ? null
      : "const does not satisfy the rest of its schema";
  }
  const choices = enumList(s);
  if (choices !== null) {
    const rest = without(s, "enum");
    return choices.some((v) => matches(v, rest, depth, work))
      ? null
      : "no enum value satisfies the rest of its schema";
  }
  let first: string | null = null;
  for (const kind of candidateKinds(s)) {
    const p = kindProblem(s, kind);
    if (p === null) return null;
    first ??= p;
  }
  return first ?? "no type is allowed by every subschema";
}

function kindProblem(s: Schema, kind: string): string | null {
  switch (kind) {
    case "integer":
      return integerProblem(s);
    case "number":
      return numberProblem(s);
    case "string":
      return stringProblem(s);
    case "array":
      return arrayProblem(s);
    case "object":
      return objectProblem(s);
    case "boolean":
    case "null":
      return null;
    default:
      return `tool parameters of type ${kind} are not supported`;
  }
}

function numberProblem(s: Schema): string | null {
  const lb = lowerBound(s);
  const ub = upperBound(s);
  if (lb === null || ub === null) return null;
  if (lb.value > ub.value) {
    return `${lb.name} (${lb.value}) is greater than ${ub.name}(${ub.value})`;
  }
  if (lb.value === ub.value && (lb.exclusive || ub.exclusive)) {
    return `${lb.name} (${lb.value}) is not less than ${ub.name}(${ub.value})`;
  }
  return null;
}

function integerProblem(s: Schema): string | null {
  const lb = lowerBound(s);
  const ub = upperBound(s);
  if (lb === null || ub === null || intLow(lb) <= intHigh(ub)) return null;
  return numberProblem(s) ??
    `no integer lies between ${lb.name} (${lb.value}) and ${ub.name}(${ub.value})`;
}

function stringProblem(s: Schema): string | null {
  const min = count(s.minLength);
  const max = count(s.maxLength);
  if (min !== null && max !== null && Math.ceil(min) > Math.floor(max)) {
    return `minLength (${min}) is greater than maxLength(${max})`;
  }
  if (min !== null && min > MAX_MIN_LENGTH) {
    return `minLength (${min}) is more than vllm-sim generates (${MAX_MIN_LENGTH})`;
  }
  return null;
}

function arrayProblem(s: Schema): string | null {
  const min = Math.ceil(count(s.minItems) ?? 0);
  const max = count(s.maxItems);
  if (max !== null && min > Math.floor(max)) {
    return `minItems (${min}) is greater than maxItems(${max})`;
  }
  const tuple = tupleLimit(s);
  if (tuple !== null && min > tuple) {
    return `minItems (${min}) is greater than the ${tuple} items allowed`;
  }
  if (min > MAX_MIN_ITEMS) {
    return `minItems (${min}) is more than vllm-sim generates (${MAX_MIN_ITEMS})`;
  }
  const distinct = s.uniqueItems === true && isObject(s.items) ? distinctValues(s.items) : Infinity;
  if (min > distinct) {
    return `minItems (${min}) is more than the ${distinct} distinct items allowed`;
  }
  return null;
}

/** How many different values a simple schema allows (Infinity when many or unknown). */
function distinctValues(s: Schema): number {
  if (hasCombinator(s)) return Infinity;
  if ("const" in s) return 1;
  const choices = enumList(s);
  if (choices !== null) return new Set(choices.map(goJson)).size;
  const lb = lowerBound(s);
  const ub = upperBound(s);
  switch (s.type) {
    case "null":
      return 1;
    case "boolean":
      return 2;
    case "integer":
      return lb && ub ? Math.max(0, intHigh(ub) - intLow(lb) + 1) : Infinity;
    default:
      return Infinity;
  }
}

/** The most items `items: false` or a tuple with `additionalItems: false` allows, or null. */
function tupleLimit(s: Schema): number | null {
  if (s.items === false) return 0;
  return Array.isArray(s.items) && s.additionalItems === false ? s.items.length : null;
}

function objectProblem(s: Schema): string | null {
  const props = isObject(s.properties) ? s.properties : {};
  for (const key of strings(s.required)) {
    const declared = Object.hasOwn(props, key);
    if (declared && props[key] === false) return `required property "${key}" admits no value`;
    if (!declared && closed(s)) {
      return `required property "${key}" is not allowed by additionalProperties`;
    }
  }
  const min = count(s.minProperties);
  const max = count(s.maxProperties);
  if (min !== null && max !== null && min > max) {
    return `minProperties (${min}) is greater than maxProperties(${max})`;
  }
  const required = new Set(strings(s.required)).size;
  if (max !== null && required > max) {
    return `maxProperties (${max}) is less than the ${required} required properties`;
  }
  const allowed = Object.values(props).filter((v) => v !== false).length;
  if (min !== null && closed(s) && min > allowed) {
    return `minProperties (${min}) is more than the ${allowed} properties allowed`;
  }
  return null;
}

/** True when keys outside `properties` are forbidden (patternProperties is not modelled). */
const closed = (s: Schema): boolean =>
  s.additionalProperties === false && !isObject(s.patternProperties);

/** A problem inside a sub-schema: properties, items, or the children of a branch. */
function childProblem(s: Schema, depth: number, work: Work): string | null {
  if (depth > MAX_DEPTH || ++work.checks > MAX_CHECKS) return null;
  for (const sub of subSchemas(s)) {
    const p = problem(sub, depth + 1, work);
    if (p !== null) return p;
  }
  // A branch is judged together with its siblings (ownProblem); its children alone here.
  for (const branch of branchesOf(s)) {
    const p = isObject(branch) ? childProblem(branch, depth + 1, work) : null;
    if (p !== null) return p;
  }
  return null;
}

/** Sub-schemas a value may have to meet; `false` ones just forbid (ownProblem judges those). */
function subSchemas(s: Schema): unknown[] {
  const out: unknown[] = [];
  if (isObject(s.properties)) out.push(...Object.values(s.properties));
  if (Array.isArray(s.items)) out.push(...s.items);
  else out.push(s.items);
  out.push(s.additionalProperties, s.additionalItems);
  return out.filter(isObject);
}

// ---------- combinators ----------

const COMBINATORS = ["allOf", "anyOf", "oneOf"] as const;

/** A non-empty branch list, or null (an empty one is ignored). */
function branchList(v: unknown): unknown[] | null {
  return Array.isArray(v) && v.length > 0 ? v : null;
}

const branchesOf = (s: Schema): unknown[] => COMBINATORS.flatMap((k) => branchList(s[k]) ?? []);

const hasCombinator = (s: Schema): boolean =>
  COMBINATORS.some((k) => branchList(s[k]) !== null) || "not" in s;

/** The schema without its combinators, with every allOf member merged in. */
function baseSchema(s: Schema): Schema | false {
  const rest: Schema = { ...s };
  for (const key of [...COMBINATORS, "not"]) delete rest[key];
  let base: Schema | false = rest;
  for (const member of branchList(s.allOf) ?? []) base = mergeSub(base, asSchema(member));
  return base;
}

/** Annotation keywords: a schema made of these alone accepts every value. */
const ANNOTATIONS = new Set(["title", "description", "default", "examples", "$comment"]);

const acceptsAll = (v: unknown): boolean =>
  v === true || (isObject(v) && Object.keys(v).every((k) => ANNOTATIONS.has(k)));

/**
 * anyOf × oneOf branch pairs merged into the base; one of them must be
 * satisfiable (nested contradictions included). oneOf's "only one" and most of
 * `not` are beyond this check.
 */
function combinatorProblem(s: Schema, depth: number, work: Work): string | null {
  if ("not" in s && acceptsAll(s.not)) return "not excludes every value";
  const base = baseSchema(s);
  let first: string | null = null;
  for (const any of branchList(s.anyOf) ?? [{}]) {
    for (const one of branchList(s.oneOf) ?? [{}]) {
      if (++work.checks > MAX_CHECKS) return null; // past the budget: counts as satisfiable
      const merged = mergeSub(mergeSub(base, asSchema(any)), asSchema(one));
      const p = mergedProblem(merged, depth + 1, work);
      if (p === null) return null;
      first ??= p;
    }
  }
  return first;
}

/** The branches that, merged into `base`, leave a value; all of them when none do. */
function viableBranches(base: Schema, list: unknown, depth: number, work: Work): Schema[] | null {
  const all = branchList(list)?.map(asSchema);
  if (all === undefined) return null;
  const usable = all.filter((b): b is Schema => b !== false);
  const viable = usable.filter((b) =>
    ++work.checks <= MAX_CHECKS && mergedProblem(merge(base, b), depth + 1, work) === null
  );
  if (viable.length > 0) return viable;
  return usable.length > 0 ? usable : [{}];
}

/** The values of enum x also in enum y (one text per value, not one per pair). */
function enumIntersection(x: unknown[], y: unknown[]): unknown[] {
  const inY = new Set(y.map(enumKey));
  return x.filter((v) => inY.has(enumKey(v)));
}

/** A value's identity for enum equality: its Go JSON text, with -0 equal to 0. */
const enumKey = (v: unknown): string => v === 0 ? "0" : goJson(v);

/**
 * A merged schema's own problem, or one in what a value must contain. Merging
 * can also contradict optional parts; generation leaves those out, and the
 * client's own sub-schemas are judged by childProblem.
 */
function mergedProblem(s: Schema | false, depth: number, work: Work): string | null {
  if (s === false) return "schema false admits no value";
  if (depth > MAX_DEPTH) return null;
  const p = ownProblem(s, depth, work);
  if (p !== null) return p;
  const props = isObject(s.properties) ? s.properties : {};
  for (const key of strings(s.required)) {
    const q = Object.hasOwn(props, key) ? problem(props[key], depth + 1, work) : null;
    if (q !== null) return q;
  }
  const needsItems = (count(s.minItems) ?? 0) > 0 && isObject(s.items);
  return needsItems ? problem(s.items, depth + 1, work) : null;
}

// ---------- merging (allOf members and the chosen branches) ----------

/** Larger wins when two schemas both set these… */
const RAISE = new Set(["minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"]);
/** …smaller wins for these. */
const LOWER = new Set(["maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"]);

function mergeSub(a: unknown, b: unknown): Schema | false {
  if (a === false || b === false) return false;
  if (!isObject(a)) return asSchema(b);
  if (!isObject(b)) return a;
  return merge(a, b);
}

/**
 * Both sub-schemas, merged lazily as an allOf (exact, and merging nested
 * properties eagerly would grow exponentially with their depth).
 */
function both(a: unknown, b: unknown): Schema | false {
  if (a === false || b === false) return false;
  if (acceptsAll(a) || !isObject(a)) return asSchema(b);
  if (acceptsAll(b) || !isObject(b)) return a;
  return { allOf: [a, b] };
}

/** One schema demanding both `a` and `b` (an approximation; generation re-checks the result). */
function merge(a: Schema, b: Schema): Schema {
  const x = numericBounds(a);
  const y = numericBounds(b);
  const out: Schema = { ...x };
  for (const [key, v] of Object.entries(y)) {
    put(out, key, Object.hasOwn(out, key) ? mergeKeyword(key, out[key], v) : v);
  }
  // Two different consts: no value is both; an empty enum says so.
  if ("const" in x && "const" in y && !sameJson(x.const, y.const)) out.enum = [];
  if (isObject(out.properties)) out.properties = sidesProperties(out.properties, [x, y]);
  return out;
}

function mergeKeyword(key: string, x: unknown, y: unknown): unknown {
  if (typeof x === "number" && typeof y === "number") {
    if (RAISE.has(key)) return Math.max(x, y);
    if (LOWER.has(key)) return Math.min(x, y);
  }
  switch (key) {
    case "required":
      return [...new Set([...strings(x), ...strings(y)])];
    case "properties":
      return isObject(x) && isObject(y) ? mergeProperties(x, y) : y;
    case "items":
    case "additionalProperties":
    case "additionalItems":
      return Array.isArray(x) || Array.isArray(y) ? y : both(x, y);
    case "type":
      return intersectTypes(x, y);
    case "enum":
      return Array.isArray(x) && Array.isArray(y) ? enumIntersection(x, y) : y;
    default:
      return y;
  }
}

function mergeProperties(x: Schema, y: Schema): Schema {
  const out: Schema = { ...x };
  for (const [key, v] of Object.entries(y)) {
    put(out, key, Object.hasOwn(out, key) ? both(out[key], v) : v);
  }
  return out;
}

/**
 * A property one side does not declare falls under that side's
 * additionalProperties: dropped when it is false, merged with it when a schema.
 */
function sidesProperties(props: Schema, sides: Schema[]): Schema {
  let out = props;
  for (const side of sides) {
    const own = isObject(side.properties) ? side.properties : {};
    const extra = side.additionalProperties;
    if (isObject(side.patternProperties) || !(extra === false || isObject(extra))) continue;
    const entries = Object.entries(out).filter(([k]) => extra !== false || Object.hasOwn(own, k));
    out = Object.fromEntries(
      entries.map(([k, v]) => [k, Object.hasOwn(own, k) ? v : both(v, extra)]),
    );
  }
  return out;
}

/** Types both allow ("integer" is also a "number"); [] when they share none. */
function intersectTypes(x: unknown, y: unknown): unknown {
  const a = typeList(x);
  const b = typeList(y);
  if (a === null) return y;
  if (b === null) return x;
  const within = (t: string, list: string[]) =>
    list.includes(t) || (t === "integer" && list.includes("number"));
  const shared = [...new Set([...a.filter((t) => within(t, b)), ...b.filter((t) => within(t, a))])];
  return shared.length === 1 ? shared[0] : shared;
}

/** Draft 4's boolean exclusive bounds in the numeric form, so merges compare like with like. */
function numericBounds(s: Schema): Schema {
  if (typeof s.exclusiveMinimum !== "boolean" && typeof s.exclusiveMaximum !== "boolean") return s;
  const out = { ...s };
  for (const [plain, ex] of [["minimum", "exclusiveMinimum"], ["maximum", "exclusiveMaximum"]]) {
    if (typeof out[ex] !== "boolean") continue;
    if (out[ex] === true && num(out[plain]) !== null) {
      out[ex] = out[plain];
      delete out[plain];
    } else delete out[ex];
  }
  return out;
}

// ---------- validation (to pick enum values and re-check combinators) ----------

/**
 * Whether `v` meets `raw`, for the keywords this module understands; any other
 * keyword passes (the caller then only loses a chance to redraw).
 */
function matches(v: unknown, raw: unknown, depth: number, work: Work): boolean {
  if (raw === false) return false;
  // Past the budget (nested combinators branch exponentially) everything passes.
  if (!isObject(raw) || depth > MAX_DEPTH || ++work.checks > MAX_CHECKS) return true;
  return typeMatches(v, raw.type) && valueMatches(v, raw) && numberMatches(v, raw) &&
    stringMatches(v, raw) && arrayMatches(v, raw, depth, work) &&
    objectMatches(v, raw, depth, work) && combinatorsMatch(v, raw, depth, work);
}

function typeMatches(v: unknown, type: unknown): boolean {
  const list = typeList(type);
  return list === null || list.some((k) => isKind(v, k));
}

function isKind(v: unknown, kind: string): boolean {
  switch (kind) {
    case "null":
      return v === null;
    case "boolean":
      return typeof v === "boolean";
    case "integer":
      return Number.isInteger(v);
    case "number":
      return typeof v === "number" && Number.isFinite(v);
    case "string":
      return typeof v === "string";
    case "array":
      return Array.isArray(v);
    case "object":
      return isObject(v);
    default:
      return true;
  }
}

function valueMatches(v: unknown, s: Schema): boolean {
  if ("const" in s && !sameJson(v, s.const)) return false;
  return !Array.isArray(s.enum) || s.enum.some((c) => sameJson(v, c));
}

function numberMatches(v: unknown, s: Schema): boolean {
  if (typeof v !== "number") return true;
  const lb = lowerBound(s);
  const ub = upperBound(s);
  if (lb !== null && (lb.exclusive ? v <= lb.value : v < lb.value)) return false;
  return ub === null || (ub.exclusive ? v < ub.value : v <= ub.value);
}

function stringMatches(v: unknown, s: Schema): boolean {
  if (typeof v !== "string") return true;
  const length = codePoints(v);
  const min = count(s.minLength);
  const max = count(s.maxLength);
  // `pattern` is not run: a client's regular expression could backtrack for ages.
  return (min === null || length >= min) && (max === null || length <= max);
}

/** Length as JSON Schema counts it: in code points, not UTF-16 units. */
function codePoints(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

function arrayMatches(v: unknown, s: Schema, depth: number, work: Work): boolean {
  if (!Array.isArray(v)) return true;
  const min = count(s.minItems);
  const max = count(s.maxItems);
  if ((min !== null && v.length < min) || (max !== null && v.length > max)) return false;
  const limit = tupleLimit(s);
  if (limit !== null && v.length > limit) return false;
  if (!v.every((item, i) => matches(item, itemSchema(s, i), depth + 1, work))) return false;
  return s.uniqueItems !== true || new Set(v.map(goJson)).size === v.length;
}

function objectMatches(v: unknown, s: Schema, depth: number, work: Work): boolean {
  if (!isObject(v)) return true;
  if (!strings(s.required).every((k) => Object.hasOwn(v, k))) return false;
  const keys = Object.keys(v);
  const min = count(s.minProperties);
  const max = count(s.maxProperties);
  if ((min !== null && keys.length < min) || (max !== null && keys.length > max)) return false;
  const props = isObject(s.properties) ? s.properties : {};
  const extra = isObject(s.patternProperties) ? true : s.additionalProperties ?? true;
  return keys.every((k) =>
    matches(v[k], Object.hasOwn(props, k) ? props[k] : extra, depth + 1, work)
  );
}

function combinatorsMatch(v: unknown, s: Schema, depth: number, work: Work): boolean {
  const test = (b: unknown) => matches(v, b, depth + 1, work);
  const allOf = branchList(s.allOf);
  const anyOf = branchList(s.anyOf);
  const oneOf = branchList(s.oneOf);
  if (allOf !== null && !allOf.every(test)) return false;
  if (anyOf !== null && !anyOf.some(test)) return false;
  if (oneOf !== null && oneOf.filter(test).length !== 1) return false;
  return !("not" in s) || !test(s.not);
}

// ---------- generation ----------

function generate(raw: unknown, ctx: Ctx, depth: number, top: boolean): unknown {
  if (raw === false) return null; // nothing validates; unsatisfiable() reports it
  const s = isObject(raw) ? raw : {};
  if (depth > MAX_DEPTH) return candidateKinds(s)[0] === "object" ? {} : null;
  if (++ctx.used > HARD_BUDGET) return null;
  if (hasCombinator(s)) return generateCombined(s, ctx, depth, top);
  if ("const" in s) return copy(s.const);
  const choices = enumChoices(s, depth, ctx);
  if (choices !== null) return copy(ctx.rng.pick(choices));
  return generateKind(s, chooseKind(s), ctx, depth, top);
}

/** A value of the schema's own, to hand out (structuredClone costs a microsecond even on a string). */
const copy = (v: unknown): unknown => typeof v === "object" && v !== null ? structuredClone(v) : v;

/** The enum values that also meet the rest of the schema (all of them when none do). */
function enumChoices(s: Schema, depth: number, work: Work): unknown[] | null {
  const all = enumList(s);
  if (all === null) return null;
  const rest = without(s, "enum");
  const fitting = all.filter((v) => matches(v, rest, depth, work));
  return fitting.length > 0 ? fitting : all;
}

/**
 * anyOf: a uniform pick among the viable branches. oneOf: a uniform pick first,
 * then the branches in order from the first (a value may meet several, which
 * oneOf forbids). The result is re-checked against the whole schema and
 * redrawn a bounded number of times.
 */
function generateCombined(s: Schema, ctx: Ctx, depth: number, top: boolean): unknown {
  const base = baseSchema(s);
  if (base === false) return null;
  const anyOf = viableBranches(base, s.anyOf, depth, ctx);
  const oneOf = viableBranches(base, s.oneOf, depth, ctx);
  let value: unknown = null;
  for (let attempt = 0; attempt <= MAX_REDRAWS; attempt++) {
    let merged = base;
    if (anyOf !== null) merged = merge(merged, ctx.rng.pick(anyOf));
    if (oneOf !== null) {
      const branch = attempt === 0 ? ctx.rng.pick(oneOf) : oneOf[(attempt - 1) % oneOf.length];
      merged = merge(merged, branch);
    }
    value = generate(merged, ctx, depth + 1, top);
    if (matches(value, s, depth, ctx)) return value;
  }
  return value;
}

function generateKind(s: Schema, kind: string, ctx: Ctx, depth: number, top: boolean): unknown {
  switch (kind) {
    case "object":
      return randomObject(s, ctx, depth, top);
    case "array":
      return randomArray(s, ctx, depth);
    case "string":
      return randomString(s, ctx);
    case "integer":
      return randomInteger(s, ctx);
    case "number":
      return randomNumber(s, ctx);
    case "boolean":
      return ctx.rng.next() < 0.5;
    default:
      return null; // "null", and types no value has
  }
}

/** One word, or words joined by single spaces up to minLength, cut to maxLength. */
function randomString(s: Schema, ctx: Ctx): string {
  const rng = ctx.rng;
  // Past the character budget a string stops growing (the answer is cut anyway).
  const min = Math.min(Math.ceil(count(s.minLength) ?? 0), MAX_MIN_LENGTH, ctx.chars);
  const max = count(s.maxLength);
  let text: string = rng.pick(WORDS);
  while (text.length < min) text += " " + rng.pick(WORDS);
  const out = max !== null && text.length > max ? text.slice(0, Math.floor(max)) : text;
  ctx.chars -= out.length;
  return out;
}

function randomInteger(s: Schema, ctx: Ctx): number {
  const lb = lowerBound(s);
  const ub = upperBound(s);
  const [lo, hi] = clampRange(
    lb && intLow(lb),
    ub && intHigh(ub),
    Math.ceil(ctx.limits.minInteger),
    Math.floor(ctx.limits.maxInteger),
  );
  // min(): past 2^53 the scaled draw can round one beyond hi.
  return noNegZero(Math.min(hi, ctx.rng.int(lo, hi)));
}

/** Uniform in [lo, hi); an exclusive endpoint is redrawn. */
function randomNumber(s: Schema, ctx: Ctx): number {
  const lb = lowerBound(s);
  const ub = upperBound(s);
  const loEx = lb?.exclusive ?? false;
  const hiEx = ub?.exclusive ?? false;
  let lo = lb?.value ?? ctx.limits.minNumber;
  let hi = ub?.value ?? ctx.limits.maxNumber;
  // Clamp a flag bound to the schema's other bound; when that bound is exclusive,
  // stop a step short of it so that a value remains.
  if (lb === null && (lo > hi || (hiEx && lo === hi))) lo = hiEx ? hi - step(hi) : hi;
  if (ub === null && (hi < lo || (loEx && hi === lo))) hi = loEx ? lo + step(lo) : lo;
  if (!(lo < hi)) return noNegZero(lo);
  for (let i = 0; i < MAX_REDRAWS; i++) {
    const v = lerp(lo, hi, ctx.rng.next());
    if (v < lo || v > hi || (loEx && v === lo) || (hiEx && v === hi)) continue;
    return noNegZero(v);
  }
  return noNegZero(lerp(lo, hi, 0.5));
}

/** A step of 1 that still moves a large value. */
const step = (x: number): number => Math.max(1, Math.abs(x) * 2 ** -40);

/** lo + r·(hi − lo), without overflow when the width exceeds the double range. */
function lerp(lo: number, hi: number, r: number): number {
  const width = hi - lo;
  return Number.isFinite(width) ? lo + r * width : lo * (1 - r) + hi * r;
}

function randomArray(s: Schema, ctx: Ctx, depth: number): unknown[] {
  const [lo, hi] = arrayLengthRange(s, ctx.limits);
  let length = ctx.used > SOFT_BUDGET ? lo : ctx.rng.int(lo, hi);
  // Items a merge contradicted: as few as the schema itself allows.
  if (!optionalFits(s.items, depth, ctx)) length = Math.ceil(count(s.minItems) ?? 0);
  const seen = s.uniqueItems === true ? new Set<string>() : null;
  const out: unknown[] = [];
  for (let i = 0; i < length && ctx.used <= HARD_BUDGET && ctx.chars > 0; i++) {
    let item = generate(itemSchema(s, i), ctx, depth + 1, false);
    if (seen !== null) {
      for (let r = 0; r < MAX_REDRAWS && seen.has(goJson(item)); r++) {
        item = generate(itemSchema(s, i), ctx, depth + 1, false);
      }
      const key = goJson(item);
      if (seen.has(key) && out.length >= lo) break; // shorter beats duplicated
      seen.add(key);
    }
    out.push(item);
  }
  return out;
}

/** [min, max] length: schema bounds over flag bounds, then what a closed tuple allows. */
function arrayLengthRange(s: Schema, limits: JsonValueLimits): [number, number] {
  const min = count(s.minItems);
  const max = count(s.maxItems);
  let [lo, hi] = clampRange(
    min === null ? null : Math.ceil(min),
    max === null ? null : Math.floor(max),
    Math.max(0, Math.ceil(limits.minArrayLength)),
    Math.max(0, Math.floor(limits.maxArrayLength)),
  );
  const tuple = tupleLimit(s);
  if (tuple !== null) hi = Math.min(hi, tuple);
  lo = Math.min(lo, hi, MAX_MIN_ITEMS);
  return [lo, Math.max(lo, hi)];
}

/** The schema for item `i`: the tuple entry, additionalItems past it, or `items`. */
function itemSchema(s: Schema, i: number): unknown {
  if (!Array.isArray(s.items)) return s.items ?? {};
  return i < s.items.length ? s.items[i] : s.additionalItems ?? {};
}

/**
 * Required properties always, others by roll (the top-level percent at the top,
 * the field percent below), in schema order; then min/maxProperties are met by
 * adding or dropping optional ones. Required names without a declaration come
 * last, drawn from additionalProperties, then any extras minProperties needs.
 */
function randomObject(s: Schema, ctx: Ctx, depth: number, top: boolean): Schema {
  const props = Object.entries(isObject(s.properties) ? s.properties : {});
  const required = new Set(strings(s.required));
  const rate = top ? ctx.limits.optionalPropertyPercent : ctx.limits.optionalFieldPercent;
  const keep = props.map(([key, sub]) => {
    if (required.has(key)) return true;
    return roll(ctx.rng, rate) && ctx.used <= SOFT_BUDGET && optionalFits(sub, depth, ctx);
  });
  const declared = new Set(props.map(([key]) => key));
  const undeclared = [...required].filter((key) => !declared.has(key));
  fitPropertyCount(s, props, keep, required, undeclared.length);
  const out: Schema = {};
  props.forEach(([key, sub], i) => {
    if (keep[i]) put(out, key, generate(sub, ctx, depth + 1, false));
  });
  const extra = isObject(s.additionalProperties) ? s.additionalProperties : {};
  for (const key of undeclared) put(out, key, generate(extra, ctx, depth + 1, false));
  // Extras only when minProperties asks for more than the declared properties.
  const missing = Math.min((count(s.minProperties) ?? 0) - Object.keys(out).length, MAX_MIN_ITEMS);
  for (const key of extraNames(out, missing)) {
    if (ctx.chars <= 0 || ctx.used > HARD_BUDGET) break;
    put(out, key, generate(extra, ctx, depth + 1, false));
  }
  return out;
}

/** `n` property names not in `obj`: the words, then the words numbered. */
function extraNames(obj: Schema, n: number): string[] {
  const names: string[] = [];
  for (let i = 0; names.length < n; i++) {
    const word = WORDS[i % WORDS.length];
    const name = i < WORDS.length ? word : `${word}${Math.floor(i / WORDS.length)}`;
    if (!Object.hasOwn(obj, name)) names.push(name);
  }
  return names;
}

/** Whether an optional property or item can be given (a merge may have contradicted it). */
function optionalFits(sub: unknown, depth: number, ctx: Ctx): boolean {
  if (sub === false) return false;
  return !isObject(sub) || !hasCombinator(sub) || problem(sub, depth + 1, ctx) === null;
}

/** Adds optional properties (in order) up to minProperties, drops them (from the end) to maxProperties. */
function fitPropertyCount(
  s: Schema,
  props: [string, unknown][],
  keep: boolean[],
  required: Set<string>,
  undeclared: number,
): void {
  let n = undeclared + keep.filter(Boolean).length;
  const min = count(s.minProperties) ?? 0;
  for (let i = 0; i < props.length && n < min; i++) {
    if (keep[i] || props[i][1] === false) continue; // a contradicted one may slip in here
    keep[i] = true;
    n++;
  }
  const max = count(s.maxProperties) ?? Infinity;
  for (let i = props.length - 1; i >= 0 && n > max; i--) {
    if (!keep[i] || required.has(props[i][0])) continue;
    keep[i] = false;
    n--;
  }
}

// ---------- Go encoding/json ----------

/**
 * Go encoding/json text of a value: compact, object keys sorted by UTF-8 byte
 * order, `<` `>` `&` U+2028 U+2029 escaped, lone surrogates as \ufffd (Go
 * writes invalid UTF-8 so). Non-finite numbers, which Go refuses, become null.
 */
export function goJson(value: unknown): string {
  if (typeof value === "string") return goQuote(value);
  if (typeof value === "number") return goNumber(value);
  if (typeof value === "boolean" || typeof value === "bigint") return String(value);
  if (Array.isArray(value)) {
    let out = "[";
    for (let i = 0; i < value.length; i++) out += (i > 0 ? "," : "") + goJson(value[i]);
    return out + "]";
  }
  if (isObject(value)) {
    const keys = Object.keys(value).filter((k) => value[k] !== undefined);
    if (keys.length > 1) keys.sort(compareUtf8);
    let out = "{";
    for (let i = 0; i < keys.length; i++) {
      out += (i > 0 ? "," : "") + goQuote(keys[i]) + ":" + goJson(value[keys[i]]);
    }
    return out + "}";
  }
  return "null";
}

/** Go's float64 text matches JavaScript's shortest form, except that Go keeps -0. */
function goNumber(n: number): string {
  if (!Number.isFinite(n)) return "null";
  return Object.is(n, -0) ? "-0" : JSON.stringify(n);
}

/**
 * UTF-8 byte order of two strings. It equals UTF-16 unit order except where a
 * surrogate (U+10000 and up) meets a unit in U+E000–U+FFFF, so lift surrogates
 * above that block.
 */
function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return utf8Rank(x) - utf8Rank(y);
  }
  return a.length - b.length;
}

const utf8Rank = (unit: number): number =>
  unit >= 0xe000 ? unit - 0x800 : unit >= 0xd800 ? unit + 0x2000 : unit;

/** Escapes Go's encoder writes (htmlEscape on; \b and \f short since Go 1.22). */
const SHORT_ESCAPES: Record<number, string> = {
  0x22: '\\"',
  0x5c: "\\\\",
  0x08: "\\b",
  0x0c: "\\f",
  0x0a: "\\n",
  0x0d: "\\r",
  0x09: "\\t",
};

/** Characters where Go's escaping differs from JSON.stringify's. */
const GO_SPECIAL = /[<>&\u2028\u2029\ud800-\udfff]/;

function goQuote(text: string): string {
  // Elsewhere both write the same escapes (\b \f \n \r \t, \u00xx for the other controls).
  if (!GO_SPECIAL.test(text)) return JSON.stringify(text);
  let out = '"';
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && isLowSurrogate(text.charCodeAt(i + 1))) {
      i++; // a valid pair is written as is
      continue;
    }
    const escaped = escapeUnit(c);
    if (escaped === null) continue;
    out += text.slice(start, i) + escaped;
    start = i + 1;
  }
  return out + text.slice(start) + '"';
}

const isLowSurrogate = (c: number): boolean => c >= 0xdc00 && c <= 0xdfff;

/** Go's escape for one UTF-16 unit (a lone surrogate here), or null to write it as is. */
function escapeUnit(c: number): string | null {
  if (c >= 0xd800 && c <= 0xdfff) return "\\ufffd";
  if (SHORT_ESCAPES[c] !== undefined) return SHORT_ESCAPES[c];
  if (c < 0x20 || c === 0x3c || c === 0x3e || c === 0x26 || c === 0x2028 || c === 0x2029) {
    return "\\u" + c.toString(16).padStart(4, "0");
  }
  return null;
}
