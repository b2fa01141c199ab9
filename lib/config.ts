// Configuration loading: CLI > environment > YAML (--config) > default, all
// driven by the option table in options.ts.
import YAML from "yaml";
import { formatDuration, parseDuration } from "./duration.ts";
import { loraNameProblem } from "./models.ts";
import {
  ADMIN_KEYS,
  BLOCK_SIZES,
  type Config,
  type ConfigKey,
  FAILURE_TYPES,
  FAKE_BUCKET_FIELDS,
  FAKE_COUNTER_FIELDS,
  FAKE_VALUE_FIELDS,
  type FakeMetricsSpec,
  findOption,
  GROUPS,
  isAlias,
  type LoraModule,
  MIN_MAX_RULES,
  type NamedOption,
  OPTION_LIST,
  type OptionSpec,
  STD_DEV_RULES,
  VALUE_OPTIONS,
} from "./options.ts";

export type { Config, FakeMetricsSpec, LoraModule } from "./options.ts";

/** A bad flag, value or rule; `option` is the offending option's name. */
export class ConfigError extends Error {
  constructor(readonly option: string, message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Thrown by loadConfig for --help / -h: the caller prints helpText() and exits 0. */
export class HelpRequested extends Error {
  constructor() {
    super("help requested");
    this.name = "HelpRequested";
  }
}

export interface LoadedConfig {
  config: Config;
  warnings: string[];
  /** False when the seed was derived from the start time (log it so runs can be replayed). */
  seedGiven: boolean;
  /** The options some layer set (flag, env or YAML), as opposed to defaults. */
  given: ReadonlySet<string>;
  configFile?: string;
}

type ValueOption = OptionSpec & { name: ConfigKey };
/** Raw (not yet typed) value and where it came from, for error messages. */
interface Raw {
  value: unknown;
  from: string;
}
type Layer = Map<ConfigKey, Raw>;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

const fail = (name: string, from: string, rule: string): never => {
  throw new ConfigError(name, `--${name}${from ? ` (${from})` : ""}: ${rule}`);
};

// ---------- value coercion (one place for CLI strings, env, YAML and admin JSON) ----------

const TRUE = new Set(["1", "t", "true", "yes", "on"]);
const FALSE = new Set(["0", "f", "false", "no", "off"]);
const FAKE_FUNC = /^(oscillate|ramp|rampreset|squarewave):(-?[\d.]+):(-?[\d.]+):(.+)$/;
/**
 * The longest duration any option takes: a day. Beyond it a timer would be
 * meaningless (and past 2^31 ms Deno fires it at once).
 */
const MAX_DURATION = "24h";
const MAX_DURATION_MS = parseDuration(MAX_DURATION);
/** Fake counts and gauges stay exact integers-or-floats Prometheus can carry. */
const MAX_FAKE_COUNT = Number.MAX_SAFE_INTEGER;
/** No histogram has more buckets than this (the longest has 23 including +Inf). */
const MAX_BUCKETS = 64;
/** Fake LoRA entries: enough for any test, bounded so one request cannot pin memory. */
const MAX_FAKE_LORAS = 1000;

function scalarString(o: ValueOption, raw: unknown, from: string): string {
  if (typeof raw === "string") return raw;
  if (typeof raw === "number" || typeof raw === "boolean") return String(raw);
  return fail(o.name, from, `expected a single value, got ${JSON.stringify(raw)}`);
}

function checkRange(o: ValueOption, n: number, from: string): number {
  if (o.min !== undefined && n < o.min) fail(o.name, from, `must be ≥ ${o.min}, got ${n}`);
  if (o.max !== undefined && n > o.max) fail(o.name, from, `must be ≤ ${o.max}, got ${n}`);
  return n;
}

function coerce(o: ValueOption, raw: unknown, from: string): unknown {
  switch (o.type) {
    case "int": {
      if (typeof raw === "number" && !Number.isSafeInteger(raw)) {
        fail(o.name, from, "must be an integer (at most 2^53)");
      }
      const s = scalarString(o, raw, from).trim();
      if (!/^[+-]?\d+$/.test(s) || !Number.isSafeInteger(Number(s))) {
        fail(o.name, from, `must be an integer (at most 2^53), got "${s}"`);
      }
      return checkRange(o, Number(s), from);
    }
    case "float": {
      if (typeof raw === "number" && !Number.isFinite(raw)) {
        fail(o.name, from, "must be a finite number");
      }
      const s = scalarString(o, raw, from).trim();
      const n = Number(s);
      if (s === "" || !Number.isFinite(n)) fail(o.name, from, `must be a number, got "${s}"`);
      return checkRange(o, n, from);
    }
    case "string":
      return scalarString(o, raw, from);
    case "bool": {
      const s = scalarString(o, raw, from).trim().toLowerCase();
      if (TRUE.has(s)) return true;
      if (FALSE.has(s)) return false;
      return fail(o.name, from, `must be true or false, got "${s}"`);
    }
    case "duration": {
      let ms = 0;
      try {
        ms = parseDuration(typeof raw === "number" ? raw : scalarString(o, raw, from));
      } catch (e) {
        return fail(o.name, from, (e as Error).message);
      }
      return ms <= MAX_DURATION_MS ? ms : fail(o.name, from, `must be at most ${MAX_DURATION}`);
    }
    case "enum": {
      const s = scalarString(o, raw, from);
      if (!o.choices?.includes(s)) {
        fail(o.name, from, `must be one of ${o.choices?.map((c) => `"${c}"`).join(", ")}`);
      }
      return s;
    }
    case "list": {
      const items = Array.isArray(raw) ? raw : [raw];
      let out = items.map((v) => scalarString(o, v, from));
      if (o.jsonStrings) out = out.flatMap((v) => jsonStrings(o.name, v, from));
      // failure types are often written comma-separated (pflag string-slice style)
      return o.name === "failure-types"
        ? out.flatMap((s) => s.split(",")).map((s) => s.trim()).filter((s) => s)
        : out;
    }
    case "json-list":
      return (Array.isArray(raw) ? raw : [raw]).flatMap((v) => parseLora(o.name, v, from));
    case "json":
      return parseFakeMetrics(raw, from);
  }
}

/** `["a","b"]` → its strings; any other value stands for itself. */
function jsonStrings(name: string, v: string, from: string): string[] {
  if (!v.trimStart().startsWith("[")) return [v];
  const parsed = parseJson(name, v, from);
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === "string")) {
    return fail(name, from, `expected a JSON list of strings, got ${v}`);
  }
  return parsed;
}

function parseJson(name: string, v: unknown, from: string): unknown {
  if (typeof v !== "string") return v;
  try {
    return JSON.parse(v);
  } catch (e) {
    return fail(name, from, `invalid JSON ${JSON.stringify(v)}: ${(e as Error).message}`);
  }
}

function parseLora(name: string, item: unknown, from: string): LoraModule[] {
  const v = parseJson(name, item, from);
  if (Array.isArray(v)) return v.flatMap((x) => parseLora(name, x, from));
  if (!isObject(v)) return fail(name, from, `each entry must be a JSON object, got ${String(v)}`);
  if (typeof v.name !== "string" || v.name === "") {
    fail(name, from, `each entry needs a non-empty string "name": ${JSON.stringify(v)}`);
  }
  const mod: LoraModule = { name: v.name as string };
  for (const k of ["path", "base_model_name"] as const) {
    if (v[k] === undefined || v[k] === null) continue;
    if (typeof v[k] !== "string") fail(name, from, `"${k}" must be a string in ${v.name}`);
    mod[k] = v[k] as string;
  }
  return [mod];
}

/** Largest value each gauge field may take: a usage is a fraction. */
const fakeValueMax = (field: string) => field === "kv-cache-usage" ? 1 : MAX_FAKE_COUNT;

function fakeValue(field: string, v: unknown, from: string): number | string {
  const bad = (rule: string) => fail("fake-metrics", from, `${field}: ${rule}`);
  const max = fakeValueMax(field);
  const inRange = (n: number) => Number.isFinite(n) && n >= 0 && n <= max;
  if (typeof v === "number") return inRange(v) ? v : bad(`must be a number in 0..${max}`);
  if (typeof v !== "string") return bad("must be a number or a function string");
  if (v.trim() !== "" && Number.isFinite(Number(v))) return fakeValue(field, Number(v), from);
  const m = FAKE_FUNC.exec(v);
  if (!m || !Number.isFinite(Number(m[2])) || !Number.isFinite(Number(m[3]))) {
    return bad(`"${v}" is not (oscillate|ramp|rampreset|squarewave):start:end:period`);
  }
  if (!inRange(Number(m[2])) || !inRange(Number(m[3]))) {
    return bad(`"${v}": start and end must be in 0..${max}`);
  }
  let period = 0;
  try {
    period = parseDuration(m[4]);
  } catch {
    bad(`"${v}" has an invalid period duration`);
  }
  if (!(period > 0 && period <= MAX_DURATION_MS)) {
    return bad(`"${v}" needs a period > 0 and at most ${MAX_DURATION}`);
  }
  return v;
}

/** A count from a request or file: a finite number in 0..2^53. */
const isCount = (n: unknown): n is number =>
  typeof n === "number" && Number.isFinite(n) && n >= 0 && n <= MAX_FAKE_COUNT;

function countList(field: string, v: unknown, from: string): number[] {
  const ok = Array.isArray(v) && v.length <= MAX_BUCKETS && v.every(isCount);
  return ok
    ? [...v]
    : fail("fake-metrics", from, `${field}: must be a list of at most ${MAX_BUCKETS} counts ≥ 0`);
}

function parseFakeMetrics(raw: unknown, from: string): FakeMetricsSpec | null {
  if (raw === "" || raw === null) return null;
  const v = parseJson("fake-metrics", raw, from);
  if (!isObject(v)) return fail("fake-metrics", from, "must be a JSON object or YAML map");
  const out: FakeMetricsSpec = {};
  const known = new Set<string>([
    ...FAKE_VALUE_FIELDS,
    ...FAKE_BUCKET_FIELDS,
    ...FAKE_COUNTER_FIELDS,
    "loras",
    "request-success-total",
  ]);
  for (const k of Object.keys(v)) {
    if (!known.has(k)) fail("fake-metrics", from, `unknown field "${k}"`);
  }
  for (const f of FAKE_VALUE_FIELDS) if (v[f] !== undefined) out[f] = fakeValue(f, v[f], from);
  for (const f of FAKE_BUCKET_FIELDS) if (v[f] !== undefined) out[f] = countList(f, v[f], from);
  for (const f of FAKE_COUNTER_FIELDS) {
    if (v[f] === undefined) continue;
    const n = v[f];
    out[f] = isCount(n) ? n : fail("fake-metrics", from, `${f}: must be a number in 0..2^53`);
  }
  if (v.loras !== undefined) {
    if (!Array.isArray(v.loras) || v.loras.length > MAX_FAKE_LORAS) {
      fail("fake-metrics", from, `loras: must be a list of at most ${MAX_FAKE_LORAS} entries`);
    }
    out.loras = (v.loras as unknown[]).map((l) => {
      const ok = isObject(l) && isCount(l.timestamp) &&
        (l.running === undefined || typeof l.running === "string") &&
        (l.waiting === undefined || typeof l.waiting === "string");
      if (!ok) {
        fail("fake-metrics", from, `loras: each entry is {running, waiting, timestamp}`);
      }
      const e = l as Record<string, unknown>;
      return {
        running: (e.running as string) ?? "",
        waiting: (e.waiting as string) ?? "",
        timestamp: e.timestamp as number,
      };
    });
  }
  const rst = v["request-success-total"];
  if (rst !== undefined) {
    const ok = isObject(rst) && Object.keys(rst).length <= MAX_BUCKETS &&
      Object.values(rst).every(isCount);
    if (!ok) fail("fake-metrics", from, "request-success-total: map finish_reason → count ≥ 0");
    out["request-success-total"] = { ...(rst as Record<string, number>) };
  }
  return out;
}

// ---------- sources ----------

/** Where an alias's value lands; --lora's comma list becomes lora-modules JSON entries. */
function aliasValue(a: NamedOption, value: unknown): unknown {
  if (a.name !== "lora") return value;
  const items = Array.isArray(value) ? value : [value];
  return items.flatMap((s) => String(s).split(",")).map((s) => s.trim()).filter((s) => s)
    .map((name) => JSON.stringify({ name }));
}

/** Puts a value into a layer, resolving aliases; CLI lists append, other sources replace. */
function put(layer: Layer, opt: NamedOption, value: unknown, from: string, warnings: string[]) {
  let target = opt as ValueOption;
  if (isAlias(opt)) {
    if (opt.deprecatedFor) {
      warnings.push(`--${opt.name} is deprecated, use --${opt.deprecatedFor} instead`);
    }
    target = findOption(opt.target) as ValueOption;
    value = aliasValue(opt, value);
  }
  const prev = layer.get(target.name);
  const isList = target.type === "list" || target.type === "json-list";
  if (isList && from.startsWith("flag") && prev && Array.isArray(prev.value)) {
    value = [...prev.value, ...(Array.isArray(value) ? value : [value])];
  }
  layer.set(target.name, { value, from });
}

const looksLikeFlag = (s: string) => /^--?[A-Za-z]/.test(s);

function parseArgv(argv: string[], warnings: string[]): Layer {
  const layer: Layer = new Map();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!looksLikeFlag(arg)) {
      positional.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq < 0 ? body : body.slice(0, eq);
    const inline = eq < 0 ? undefined : body.slice(eq + 1);
    if (name === "help" || name === "h") throw new HelpRequested();

    let opt = findOption(name);
    let negated = false;
    if (!opt && name.startsWith("no-")) {
      const base = findOption(name.slice(3));
      if (base?.type === "bool") [opt, negated] = [base, true];
    }
    if (!opt) throw new ConfigError(name, `unknown flag --${name} (see --help)`);
    const from = `flag ${arg.startsWith("--") ? "--" : "-"}${name}`;

    let value: unknown;
    if (negated) {
      if (inline !== undefined) fail(opt.name, from, `--no-${opt.name} takes no value`);
      value = "false";
    } else if (opt.type === "bool") {
      // only a literal true/false after a bool flag is its value (pflag/vLLM style)
      const next = argv[i + 1];
      value = inline ?? (next === "true" || next === "false" ? argv[++i] : "true");
    } else if (opt.type === "list" || opt.type === "json-list") {
      const values: string[] = [];
      if (inline !== undefined) values.push(inline);
      else while (i + 1 < argv.length && !looksLikeFlag(argv[i + 1])) values.push(argv[++i]);
      value = values;
    } else if (inline !== undefined) {
      value = inline;
    } else {
      if (i + 1 >= argv.length || looksLikeFlag(argv[i + 1])) {
        fail(opt.name, from, "needs a value");
      }
      value = argv[++i];
    }
    put(layer, opt, value, from, warnings);
  }
  // vLLM style `vllm serve MODEL`: a leading "serve" is skipped, one positional is the model
  if (positional[0] === "serve") positional.shift();
  if (positional.length > 1 || (positional.length === 1 && layer.has("model"))) {
    throw new ConfigError(
      "model",
      `unexpected argument "${positional.at(-1)}" (one positional model at most; use --model)`,
    );
  }
  if (positional.length === 1) layer.set("model", { value: positional[0], from: "argument" });
  return layer;
}

function envLayer(env: Record<string, string | undefined>): Layer {
  const layer: Layer = new Map();
  for (const o of VALUE_OPTIONS) {
    const v = o.env ? env[o.env] : undefined;
    if (v !== undefined && v !== "") layer.set(o.name, { value: v, from: `env ${o.env}` });
  }
  return layer;
}

const SEED004_TYPES: Record<string, string> = {
  timeout: "timeout",
  serverError: "server_error",
  rateLimited: "rate_limit",
  rateLimit: "rate_limit",
};

/** Maps seed 004's nested schema (server/simulation/model/errorInjection) onto flat keys. */
function flattenSeed004(doc: Record<string, unknown>, warnings: string[]) {
  const out: Record<string, unknown> = { ...doc };
  const set = (key: string, v: unknown) => {
    if (v !== undefined && v !== null && !(key in out)) out[key] = v;
  };
  const take = (key: string): Record<string, unknown> | undefined => {
    const v = out[key];
    if (!isObject(v)) return undefined;
    delete out[key];
    return v;
  };
  const sub = (o: Record<string, unknown> | undefined, k: string) =>
    isObject(o?.[k]) ? (o?.[k] as Record<string, unknown>) : undefined;
  const ignore = (path: string) => warnings.push(`config file: ${path} is accepted and ignored`);

  const server = take("server");
  if (server) {
    set("port", server.port);
    set("host", server.host);
    set("metrics-port", server.metricsPort);
  }
  const sim = take("simulation");
  if (sim) {
    set("time-to-first-token", sub(sim, "ttft")?.mean);
    set("time-to-first-token-std-dev", sub(sim, "ttft")?.stddev);
    set("inter-token-latency", sub(sim, "itl")?.mean);
    set("inter-token-latency-std-dev", sub(sim, "itl")?.stddev);
    set("max-waiting-queue-length", sub(sim, "queue")?.maxDepth);
    if (sub(sim, "queue")?.processingRate !== undefined) ignore("simulation.queue.processingRate");
    for (const k of Object.keys(sub(sim, "tokens") ?? {})) ignore(`simulation.tokens.${k}`);
  }
  const model = take("model");
  if (model) {
    set("model", model.name);
    set("max-model-len", model.maxContextLength);
  }
  const inj = take("errorInjection");
  if (inj) {
    const rate = inj.rate;
    if (rate !== undefined && (typeof rate !== "number" || rate < 0 || rate > 1)) {
      fail("failure-injection-rate", "config file errorInjection.rate", "must be a fraction 0–1");
    }
    const pct = inj.enabled === false ? 0 : Number(((rate as number ?? 0) * 100).toPrecision(12));
    set("failure-injection-rate", pct);
    if (Array.isArray(inj.types)) {
      set(
        "failure-types",
        inj.types.map((t) =>
          SEED004_TYPES[String(t)] ?? String(t).replace(/[A-Z]/g, (c) => "_" + c.toLowerCase())
        ),
      );
    }
  }
  return out;
}

function yamlLayer(path: string, warnings: string[]): Layer {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    return fail("config", path, `cannot read the file: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (e) {
    return fail("config", path, `invalid YAML: ${(e as Error).message}`);
  }
  const layer: Layer = new Map();
  if (doc === null || doc === undefined) return layer;
  if (!isObject(doc)) return fail("config", path, "the file must hold a YAML map");
  for (const [key, value] of Object.entries(flattenSeed004(doc, warnings))) {
    const opt = findOption(key);
    if (!opt) throw new ConfigError(key, `unknown option "${key}" in config file ${path}`);
    if (opt.name === "config" || value === null) continue;
    put(layer, opt, value, `config file ${path}`, warnings);
  }
  return layer;
}

// ---------- assembly and validation ----------

/** The reference's data-parallel limits (data-parallel.md): past them, a warning, not an error. */
const DP_MAX_SIZE = 8;

/**
 * Data-parallel settings (data-parallel.md): a negative rank means unset;
 * sizes above 8 and ranks above 7, which the reference refuses, run with a
 * warning; every offset port must stay a port.
 */
function dataParallel(cfg: Config, warnings: string[]): void {
  const rank = cfg["data-parallel-rank"];
  if (rank !== undefined && rank < 0) cfg["data-parallel-rank"] = undefined;
  const size = cfg["data-parallel-size"];
  if (size > DP_MAX_SIZE) {
    warnings.push(
      `--data-parallel-size ${size}: the reference allows 1 to ${DP_MAX_SIZE} ` +
        `("data parallel size must be between 1 and ${DP_MAX_SIZE}"); ${size} ranks run in this process`,
    );
  }
  if (rank !== undefined && rank >= DP_MAX_SIZE) {
    warnings.push(
      `--data-parallel-rank ${rank}: the reference allows 0 to ${DP_MAX_SIZE - 1} ` +
        `("data parallel rank must be between 0 and ${DP_MAX_SIZE - 1}")`,
    );
  }
  // This process's ranks (of all its pods) take ports port + i (metrics and gRPC ports too).
  const ranks = (cfg["data-parallel-rank"] === undefined ? size : 1) * cfg.pods;
  for (const name of ["port", "metrics-port", "grpc-port"] as const) {
    const base = cfg[name];
    if (base === undefined || base === 0) continue;
    if (base + ranks - 1 > 65535) {
      throw new ConfigError(
        name,
        `--${name} ${base} + ${
          ranks - 1
        } (the last pod's last data-parallel rank) is past port 65535`,
      );
    }
  }
}

function validate(cfg: Config): void {
  const rule = (name: string, ok: boolean, msg: string) => {
    if (!ok) throw new ConfigError(name, `--${name}: ${msg}`);
  };
  rule("model", cfg.model !== "", "is required (--model, SIM_MODEL or the config file)");
  for (const [sd, mean] of STD_DEV_RULES) {
    // compare as 10·sd ≤ 3·mean to avoid 0.3·x rounding noise
    rule(sd, cfg[sd] * 10 <= cfg[mean] * 3, `must be ≤ 30% of --${mean} (${cfg[mean]}ms)`);
  }
  rule(
    "max-cpu-loras",
    cfg["max-cpu-loras"] >= cfg["max-loras"],
    `must be ≥ --max-loras (${cfg["max-loras"]})`,
  );
  rule(
    "block-size",
    (BLOCK_SIZES as readonly number[]).includes(cfg["block-size"]),
    // The reference's words (kv-cache.md).
    `token block size should be one of the following: ${BLOCK_SIZES.join(", ")}`,
  );
  for (const [min, max] of MIN_MAX_RULES) {
    rule(min, cfg[min] <= cfg[max], `must not exceed --${max} (${cfg[max]})`);
  }
  for (const t of cfg["failure-types"]) {
    rule(
      "failure-types",
      (FAILURE_TYPES as readonly string[]).includes(t),
      `unknown type "${t}" (one of ${FAILURE_TYPES.join(", ")})`,
    );
  }
  rule(
    cfg["ssl-certfile"] ? "ssl-keyfile" : "ssl-certfile",
    !cfg["ssl-certfile"] === !cfg["ssl-keyfile"],
    "--ssl-certfile and --ssl-keyfile must be given together",
  );
  rule("fake-metrics-refresh-interval", cfg["fake-metrics-refresh-interval"] > 0, "must be > 0");
  // The reference's words (datasets.md).
  rule(
    "dataset-path",
    cfg["dataset-path"] !== "" || cfg["dataset-url"] === "",
    "dataset-path is required when dataset-url is set",
  );
  rule(
    "dataset-path",
    cfg.mode !== "echo" || (cfg["dataset-path"] === "" && cfg["dataset-url"] === ""),
    "dataset cannot be defined in echo mode",
  );
  const names = [cfg.model, ...cfg["served-model-name"]];
  for (const l of cfg["lora-modules"]) {
    const problem = loraNameProblem(l.name);
    rule("lora-modules", problem === null, `adapter name "${l.name}" ${problem}`);
    rule(
      "lora-modules",
      l.base_model_name === undefined || names.includes(l.base_model_name),
      `base_model_name "${l.base_model_name}" of ${l.name} must be the model (${cfg.model})`,
    );
  }
}

/**
 * Loads the configuration. Throws ConfigError for any bad flag, value or rule,
 * and HelpRequested for --help / -h (the caller prints helpText()).
 * Positional arguments: an optional leading "serve" and one model name, vLLM style.
 */
export function loadConfig(
  argv: string[],
  env: Record<string, string | undefined>,
): LoadedConfig {
  const warnings: string[] = [];
  const cli = parseArgv(argv, warnings);
  const configFile = cli.get("config")?.value as string | undefined;
  const layers = [configFile ? yamlLayer(configFile, warnings) : new Map(), envLayer(env), cli];
  const raw: Layer = new Map();
  for (const layer of layers) for (const [k, v] of layer) raw.set(k, v);

  const cfg: Record<string, unknown> = {};
  for (const o of VALUE_OPTIONS) {
    const r = raw.get(o.name);
    if (r === undefined) {
      cfg[o.name] = Array.isArray(o.default) ? [...o.default] : o.default;
      continue;
    }
    cfg[o.name] = coerce(o, r.value, r.from);
    if (o.ignored) warnings.push(`--${o.name} is accepted for compatibility and has no effect`);
    if (o.planned) warnings.push(`--${o.name}: this feature is not implemented yet; no effect`);
  }
  const config = cfg as Config;
  if (config["served-model-name"].length === 0 && config.model) {
    config["served-model-name"] = [config.model];
  }
  if (!raw.has("max-cpu-loras")) config["max-cpu-loras"] = config["max-loras"];
  const seedGiven = raw.has("seed");
  if (!seedGiven) config.seed = Math.round((performance.timeOrigin + performance.now()) * 1e6);
  dataParallel(config, warnings);
  validate(config);
  const given = new Set<string>(raw.keys());
  return { config, warnings, seedGiven, given, ...(configFile ? { configFile } : {}) };
}

// ---------- run-time updates, JSON view, help ----------

const isEmpty = (v: unknown) =>
  (Array.isArray(v) && v.length === 0) || (isObject(v) && Object.keys(v).length === 0);

/**
 * Returns a new validated Config with `patch` applied (POST /admin/config).
 * Only adminUpdatable keys; any other key or bad value throws ConfigError and
 * `cfg` is left untouched. `fake-metrics` merges field by field: absent/null
 * fields stay, `[]`/`{}` clear a field; `"fake-metrics": null` or `{}` turns fake metrics off.
 */
export function applyAdminUpdate(cfg: Config, patch: unknown): Config {
  if (!isObject(patch)) throw new ConfigError("", "the update must be a JSON object");
  const next: Record<string, unknown> = { ...cfg };
  for (const [key, value] of Object.entries(patch)) {
    const o = VALUE_OPTIONS.find((v) => v.name === key);
    if (!o || !ADMIN_KEYS.includes(o.name)) {
      throw new ConfigError(key, `"${key}" cannot be changed at run time`);
    }
    const from = "admin update";
    if (o.name === "fake-metrics") {
      const p = value === null ? null : parseJson(key, value, from);
      if (p === null || isEmpty(p)) {
        next[key] = null;
        continue;
      }
      if (!isObject(p)) fail(key, from, "must be a JSON object");
      const merged: Record<string, unknown> = { ...(cfg["fake-metrics"] ?? {}) };
      for (const [f, v] of Object.entries(p as Record<string, unknown>)) {
        if (v === null || v === undefined) continue;
        if (isEmpty(v)) delete merged[f];
        else merged[f] = v;
      }
      next[key] = parseFakeMetrics(merged, from);
    } else {
      if (value === null) fail(key, from, "must not be null");
      next[key] = coerce(o, value, from);
    }
  }
  validate(next as Config);
  return next as Config;
}

/** The effective configuration with flag names as keys (GET /admin/config). */
export function configToJSON(cfg: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const o of VALUE_OPTIONS) {
    const v: unknown = cfg[o.name];
    if (o.type === "duration") out[o.name] = formatDuration(v as number);
    else if (o.name === "api-key") out[o.name] = v ? "<redacted>" : "";
    else out[o.name] = v === undefined ? null : structuredClone(v);
  }
  return out;
}

function defaultText(o: NamedOption): string {
  if (o.defaultText) return o.defaultText;
  if (isAlias(o)) return "";
  const d = o.default;
  if (d === undefined || d === null) return "none";
  if (o.type === "duration") return formatDuration(d as number);
  if (Array.isArray(d)) return "[]";
  return d === "" ? '""' : String(d);
}

interface OptionDoc {
  flag: string;
  type: string;
  help: string;
  default: string;
  notes: string[];
}

/** What --help and docs/options.md say about one option. */
function describe(o: NamedOption): OptionDoc {
  const flag = o.type === "bool" && o.negatable ? `--[no-]${o.name}` : `--${o.name}`;
  const type = o.type === "enum" && !isAlias(o)
    ? (o.choices ?? []).map((c) => c === "" ? '""' : c).join("|")
    : o.type;
  const notes: string[] = [];
  if (o.env) notes.push(`env ${o.env}`);
  if (o.min !== undefined && o.max !== undefined) notes.push(`${o.min}–${o.max}`);
  else if (o.min !== undefined) notes.push(`≥ ${o.min}`);
  else if (o.max !== undefined) notes.push(`≤ ${o.max}`);
  if (o.adminUpdatable) notes.push("updatable at run time");
  if (o.ignored) notes.push("accepted, no effect");
  if (o.planned) notes.push("not implemented yet");
  if (isAlias(o)) {
    notes.push(o.deprecatedFor ? `deprecated: use --${o.target}` : `same as --${o.target}`);
  }
  return { flag, type, help: o.help, default: defaultText(o), notes };
}

const HELP_INTRO = [
  "Precedence: command-line flag > environment variable > --config YAML file > default.",
  "Durations: 100ms, 1.5s, 750us, 2m (a bare number is milliseconds).",
  "Lists take several space-separated values after one flag; repeating a flag appends.",
];

function groups(): [string, NamedOption[]][] {
  return GROUPS.map((g): [string, NamedOption[]] => [g, OPTION_LIST.filter((o) => o.group === g)])
    .filter(([, opts]) => opts.length > 0);
}

/** --help text, generated from the option table. */
export function helpText(): string {
  const lines = ["Usage: vllm-sim [serve] [MODEL] [options]", "", ...HELP_INTRO];
  for (const [g, opts] of groups()) {
    lines.push("", `${g}:`);
    for (const o of opts) {
      const d = describe(o);
      const notes = [d.help];
      if (d.default) notes.push(`(default: ${d.default})`);
      notes.push(...d.notes.map((n) => `[${n}]`));
      lines.push(`  ${d.flag} <${d.type}>`, `      ${notes.join(" ")}`);
    }
  }
  lines.push("", "  -h, --help", "      show this help");
  return lines.join("\n") + "\n";
}

/** docs/options.md, generated from the option table (`deno task docs`). */
export function optionsMarkdown(): string {
  const esc = (t: string) => t.replaceAll("|", "\\|");
  const lines = [
    "# Options",
    "",
    "Generated from `lib/options.ts` by `deno task docs`; do not edit by hand.",
    "",
    ...HELP_INTRO,
  ];
  for (const [g, opts] of groups()) {
    lines.push(
      "",
      `## ${g}`,
      "",
      "| flag | type | default | meaning | notes |",
      "| --- | --- | --- | --- | --- |",
    );
    for (const o of opts) {
      const d = describe(o);
      lines.push(
        `| \`${d.flag}\` | ${esc(d.type)} | ${esc(d.default)} | ${esc(d.help)} | ${
          esc(d.notes.join("; "))
        } |`,
      );
    }
  }
  return lines.join("\n") + "\n";
}
