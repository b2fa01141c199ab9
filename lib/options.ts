// The option table: the single source of truth for the CLI parser, the YAML
// file, environment variables, --help, GET/POST /admin/config and the docs.
// Builders below carry each option's value type, so `Config` is derived from
// the table and cannot drift from it.

import { HASH_ALGOS } from "./kv/block_hash.ts";

export type OptionType =
  | "int"
  | "float"
  | "string"
  | "bool"
  | "duration"
  | "list"
  | "json-list"
  | "json"
  | "enum";

export type Group =
  | "General"
  | "Latency"
  | "LoRA"
  | "Tool calls"
  | "KV cache"
  | "Failure injection"
  | "Fake metrics"
  | "Datasets"
  | "Tokenizer"
  | "Embeddings"
  | "TLS"
  | "Logging"
  | "Ignored vLLM flags"
  | "Aliases";

export const GROUPS: readonly Group[] = [
  "General",
  "Latency",
  "LoRA",
  "Tool calls",
  "KV cache",
  "Failure injection",
  "Fake metrics",
  "Datasets",
  "Tokenizer",
  "Embeddings",
  "TLS",
  "Logging",
  "Ignored vLLM flags",
  "Aliases",
];

export interface LoraModule {
  name: string;
  path?: string;
  base_model_name?: string;
}

/** A number, or a function string `fun:start:end:period` (metrics.md). */
export type FakeValue = number | string;

export interface FakeLoraInfo {
  running: string;
  waiting: string;
  timestamp: number;
}

export interface FakeMetricsSpec {
  "running-requests"?: FakeValue;
  "waiting-requests"?: FakeValue;
  "kv-cache-usage"?: FakeValue;
  loras?: FakeLoraInfo[];
  "ttft-buckets-values"?: number[];
  "tpot-buckets-values"?: number[];
  "e2erl-buckets-values"?: number[];
  "queue-time-buckets-values"?: number[];
  "inf-time-buckets-values"?: number[];
  "prefill-time-buckets-values"?: number[];
  "decode-time-buckets-values"?: number[];
  "request-prompt-tokens"?: number[];
  "request-generation-tokens"?: number[];
  "request-max-generation-tokens"?: number[];
  "request-params-max-tokens"?: number[];
  "request-success-total"?: Record<string, number>;
  "total-prompt-tokens"?: number;
  "total-generation-tokens"?: number;
  "prefix-cache-hits"?: number;
  "prefix-cache-queries"?: number;
}

export const FAKE_VALUE_FIELDS = [
  "running-requests",
  "waiting-requests",
  "kv-cache-usage",
] as const;
export const FAKE_BUCKET_FIELDS = [
  "ttft-buckets-values",
  "tpot-buckets-values",
  "e2erl-buckets-values",
  "queue-time-buckets-values",
  "inf-time-buckets-values",
  "prefill-time-buckets-values",
  "decode-time-buckets-values",
  "request-prompt-tokens",
  "request-generation-tokens",
  "request-max-generation-tokens",
  "request-params-max-tokens",
] as const;
export const FAKE_COUNTER_FIELDS = [
  "total-prompt-tokens",
  "total-generation-tokens",
  "prefix-cache-hits",
  "prefix-cache-queries",
] as const;

export const FAILURE_TYPES = [
  "rate_limit",
  "invalid_api_key",
  "context_length",
  "server_error",
  "invalid_request",
  "model_not_found",
  "timeout",
] as const;

interface Meta {
  help: string;
  group: Group;
  /** Environment variable that fills the option when the flag is absent. */
  env?: string;
  min?: number;
  max?: number;
  /** Has a --no-<name> form (every bool accepts one; this marks documented ones). */
  negatable?: boolean;
  /** May be changed at run time through POST /admin/config. */
  adminUpdatable?: boolean;
  /** Accepted for compatibility, logged with a warning, no effect. */
  ignored?: boolean;
  /** Part of the interface, but its feature is not built yet: accepted, warned about. */
  planned?: boolean;
  /** Shown in --help instead of the literal default (computed defaults). */
  defaultText?: string;
  /** A list whose values may also be JSON arrays of strings (vLLM's json.loads flags). */
  jsonStrings?: boolean;
}

/** One option; `default` carries the value type T into `Config`. */
export interface OptionSpec<T = unknown> extends Meta {
  type: OptionType;
  default: T;
  choices?: readonly string[];
}

/** Another name for an option; values go to `target` (seed 001 / seed 004 names). */
export interface AliasSpec extends Meta {
  type: OptionType;
  target: string;
  /** Legacy renamed flag: using it adds a deprecation warning. */
  deprecatedFor?: string;
}

type M = Omit<Meta, "group"> | string;
type Spec<T> = Omit<OptionSpec<T>, "group">;

const meta = (m: M): Omit<Meta, "group"> => (typeof m === "string" ? { help: m } : m);
const int = (d: number, m: M): Spec<number> => ({ type: "int", default: d, ...meta(m) });
const optInt = (m: M): Spec<number | undefined> => ({
  type: "int",
  default: undefined,
  ...meta(m),
});
const float = (d: number, m: M): Spec<number> => ({ type: "float", default: d, ...meta(m) });
const str = (d: string, m: M): Spec<string> => ({ type: "string", default: d, ...meta(m) });
const bool = (d: boolean, m: M): Spec<boolean> => ({ type: "bool", default: d, ...meta(m) });
const dur = (d: number, m: M): Spec<number> => ({ type: "duration", default: d, ...meta(m) });
const list = (m: M): Spec<string[]> => ({ type: "list", default: [], ...meta(m) });
const enumOf = <const C extends readonly string[]>(choices: C, d: C[number], m: M) => ({
  type: "enum" as const,
  default: d,
  choices,
  ...meta(m),
});
/** vLLM's CORS lists: `--allowed-origins '["https://a"]'` or plain values; default any. */
const corsList = (help: string): Spec<string[]> => ({
  type: "list",
  default: ["*"],
  help,
  jsonStrings: true,
});
/** Latency options: all updatable at run time. */
const lat = (help: string, env?: string): Spec<number> =>
  dur(0, { help, adminUpdatable: true, ...(env ? { env } : {}) });
const alias = (
  type: OptionType,
  target: string,
  deprecated: boolean,
  help: string,
): Omit<AliasSpec, "group"> => ({
  type,
  target,
  ...(deprecated ? { deprecatedFor: target } : {}),
  help,
});

/** Stamps a --help group on every entry of a section. */
function section<T extends Record<string, object>>(
  group: Group,
  entries: T,
  extra: Partial<Meta> = {},
): { [K in keyof T]: T[K] & { group: Group } } {
  const out: Record<string, object> = {};
  for (const [k, v] of Object.entries(entries)) out[k] = { ...v, ...extra, group };
  return out as { [K in keyof T]: T[K] & { group: Group } };
}

/** Marks an option whose feature is not built yet (see Meta.planned). */
const later = <T extends object>(spec: T): T & { planned: true } => ({ ...spec, planned: true });

export const OPTIONS = {
  ...section("General", {
    config: str("", "YAML file with any of these options (keys are the flag names)"),
    port: int(8000, { help: "listening port", min: 1, max: 65535 }),
    host: str("0.0.0.0", "listening address"),
    model: str("", { help: "the served model (mandatory)", env: "SIM_MODEL" }),
    "served-model-name": list({
      help: "names the API accepts; the first is reported in responses",
      defaultText: "[model]",
    }),
    "max-model-len": int(1024, { help: "context window (prompt + output tokens)", min: 1 }),
    "max-num-seqs": int(5, { help: "requests running at once", min: 1 }),
    "max-waiting-queue-length": int(1000, {
      help: "waiting requests beyond running ones; full queue → 429",
      min: 0,
    }),
    "max-sequences-per-request": int(1024, {
      help: "prompts × n one request may ask for (vLLM runs each as a sequence); more → 400",
      min: 1,
    }),
    "max-output-tokens-per-request": int(262_144, {
      help: "output tokens one request may reserve: over its sequences, max_tokens " +
        "(or the drawn length when absent); more → 400",
      min: 1,
    }),
    "header-timeout": dur(10_000, {
      help: "a connection that keeps sending while we have answered nothing this long " +
        "(a request head sent byte by byte) is closed",
    }),
    "body-timeout": dur(30_000, {
      help: "a large (> 64 KiB) or chunked request body must arrive within this time",
    }),
    "idle-timeout": dur(5_000, {
      help: "a connection where nothing moves either way this long is closed " +
        "(vLLM's uvicorn: 5s)",
    }),
    "stream-stall-timeout": dur(30_000, {
      help: "a streaming client that reads nothing for this long while its buffer is " +
        "full is dropped, freeing its slot",
    }),
    "max-num-batched-tokens": later(optInt({ help: "token budget per engine step", min: 1 })),
    mode: enumOf(["echo", "random"] as const, "random", "response content source"),
    seed: int(0, { help: "random seed for content, lengths and jitter", defaultText: "now (ns)" }),
    "max-request-body-size-mb": int(4, { help: "larger bodies get 413", min: 1, max: 512 }),
    "startup-duration": dur(0, "/health/ready answers 503 until this much time has passed"),
    "shutdown-timeout": dur(20_000, {
      help: "on SIGTERM, how long in-flight requests may finish before they are ended",
    }),
    "enable-sleep-mode": bool(false, {
      help: "enable /sleep (also needs VLLM_SERVER_DEV_MODE=1)",
      negatable: true,
    }),
    "enable-request-id-headers": bool(false, "echo X-Request-Id on responses"),
    "log-http": bool(false, "log every request/response at info level"),
    "api-key": str(
      "",
      "when set, /v1/* and the control plane (admin, fake_metrics, sleep, wake_up) need " +
        "Authorization: Bearer <key>",
    ),
    "metrics-require-api-key": bool(false, "with --api-key, /metrics needs the key too"),
    "allowed-origins": corsList("CORS: origins allowed (vLLM's JSON list or names; * = any)"),
    "allowed-methods": corsList("CORS: methods allowed (* = any)"),
    "allowed-headers": corsList("CORS: request headers allowed (* = any)"),
    "allow-credentials": bool(false, "CORS: allow credentials (cookies, authorization)"),
    "use-vllm-responses-format": bool(
      false,
      "/v1/responses: vLLM's bytes (item ids, indexes, sequence numbers, full usage) " +
        "instead of the reference's",
    ),
    "data-parallel-size": int(1, {
      help: "data-parallel ranks in this process; rank i on port+i (above the reference's " +
        "8 with a warning)",
      min: 1,
    }),
    pods: int(1, {
      help: "simulated pods in this process, each an independent simulator (its own engine, " +
        "metrics, KV events, admin config and sleep state; seed and engine ids derived per " +
        "pod; POD_NAME gets -<i>); pod i's ranks follow pod i-1's ports",
      min: 1,
    }),
    fleet: str("", {
      help: "a fleet file (YAML): groups of pods in this process, each group with its own " +
        'options (README, "A fleet of pods"); replaces --pods',
    }),
    "sd-file": str("", {
      help: "write a Prometheus file_sd target file listing every pod's ports (also served " +
        "at GET /fleet/targets)",
    }),
    "data-parallel-rank": optInt({
      help: "run one rank of a multi-process DP deployment (negative: unset; above 7 with " +
        "a warning)",
    }),
    omni: later(bool(false, { help: "emit a synthetic image in chat responses", negatable: true })),
    "image-emission-rate": later(int(0, {
      help: "chance (0-100) per chat request of an image in omni mode",
      min: 0,
      max: 100,
      adminUpdatable: true,
    })),
    "mm-encoder-only": later(
      bool(false, { help: "encoder-only multimodal mode", negatable: true }),
    ),
    "metrics-port": optInt({ help: "extra listener serving only /metrics", min: 1, max: 65535 }),
    grpc: bool(true, {
      help: "serve gRPC (vllm.grpc.engine.VllmEngine) on the API port too (connections told " +
        "apart by their first bytes or ALPN); --no-grpc leaves the port to Deno.serve alone " +
        "(HTTP/1.1 and HTTP/2 REST)",
      negatable: true,
    }),
    "grpc-port": optInt({
      help: "a gRPC-only listener (vllm.grpc.engine.VllmEngine); rank r on port + r",
      min: 1,
      max: 65535,
    }),
  }),
  ...section("Latency", {
    "latency-calculator": enumOf(["", "constant", "per-token"] as const, "", {
      help: '"" = legacy precedence mode, constant or per-token',
      adminUpdatable: true,
    }),
    "time-to-first-token": lat("time to first token", "TTFT_MEAN"),
    "time-to-first-token-std-dev": lat("std-dev of time-to-first-token (≤ 30% of it)"),
    "inter-token-latency": lat("time between tokens", "ITL_MEAN"),
    "inter-token-latency-std-dev": lat("std-dev of inter-token-latency (≤ 30% of it)"),
    "kv-cache-transfer-latency": lat("P/D decode side KV transfer time (fixed form)"),
    "kv-cache-transfer-latency-std-dev": lat("std-dev of kv-cache-transfer-latency (≤ 30%)"),
    "prefill-overhead": lat("constant prefill overhead (per-token form)"),
    "prefill-time-per-token": lat("prefill time per uncached prompt token"),
    "prefill-time-std-dev": lat("std-dev of the total prefill time"),
    "kv-cache-transfer-time-per-token": lat("KV transfer time per prompt token"),
    "kv-cache-transfer-time-std-dev": lat("std-dev of the total KV transfer time"),
    "use-vllm-kv-transfer-params": bool(
      false,
      "P/D prefill answers carry this engine's id, block ids, host and port (vLLM) instead of " +
        "the reference's DUMMY placeholders",
    ),
    "time-factor-under-load": float(1, {
      help: "latency multiplier at max-num-seqs running requests",
      min: 1,
      max: 100,
      adminUpdatable: true,
    }),
    "time-to-generate-image": later(lat("image generation time (omni mode)")),
    "time-to-generate-image-std-dev": later(lat("std-dev of time-to-generate-image (≤ 30%)")),
  }),
  ...section("LoRA", {
    "lora-modules": {
      type: "json-list",
      default: [],
      help: 'LoRA adapters as JSON: {"name":..,"path":..,"base_model_name":..}',
    } as Spec<LoraModule[]>,
    "max-loras": int(1, { help: "adapters usable by running requests at once", min: 1 }),
    "max-cpu-loras": int(0, {
      help: "adapters kept in CPU memory (≥ max-loras)",
      min: 1,
      defaultText: "max-loras",
    }),
  }),
  ...section("Tool calls", {
    "max-tool-call-integer-param": int(100, "maximum integer tool-call parameter"),
    "min-tool-call-integer-param": int(0, "minimum integer tool-call parameter"),
    "max-tool-call-number-param": float(100, "maximum number tool-call parameter"),
    "min-tool-call-number-param": float(0, "minimum number tool-call parameter"),
    "max-tool-call-array-param-length": int(5, { help: "maximum array parameter length", min: 0 }),
    "min-tool-call-array-param-length": int(1, { help: "minimum array parameter length", min: 0 }),
    "tool-call-not-required-param-probability": int(50, {
      help: "chance (0-100) to add a non-required parameter",
      min: 0,
      max: 100,
    }),
    "object-tool-call-not-required-field-probability": int(50, {
      help: "chance (0-100) to add a non-required object field",
      min: 0,
      max: 100,
    }),
    "tool-call-extra-call-probability": int(45, {
      help: "chance (0-100) of one more tool call, repeated until a roll fails",
      min: 0,
      max: 100,
    }),
    "skip-tool-validation": bool(false, "accept tool schemas outside the supported subset"),
  }),
  ...section("KV cache", {
    "enable-kvcache": bool(false, "simulate the prefix cache (needs env POD_IP)"),
    "kv-cache-size": int(1024, { help: "KV cache size in blocks", min: 0 }),
    "block-size": int(16, "tokens per block: 8, 16, 32, 64 or 128"),
    "hash-seed": str("", { help: "seed of the block hash", env: "PYTHONHASHSEED" }),
    "prefix-caching-hash-algo": enumOf(
      HASH_ALGOS,
      "fnv64a-cbor",
      "block hashes: the reference's fnv64a-cbor, or current vLLM's sha256_cbor",
    ),
    "zmq-endpoint": str("tcp://127.0.0.1:5557", "where KV events are published; empty: none"),
    "zmq-max-connect-attempts": int(0, {
      help: "deprecated: give up after this many failed connections (0: never)",
      min: 0,
      max: 10,
    }),
    "event-batch-size": int(16, { help: "KV events sent together", min: 1 }),
    "use-vllm-map-event-format": bool(false, "msgpack maps instead of positional arrays"),
    "kv-events-replay-endpoint": str("", "ZMQ ROUTER bind address for replay; empty disables"),
    "kv-events-replay-queue-size": int(1024, { help: "batches kept for replay", min: 1 }),
    "global-cache-hit-threshold": float(0, {
      help: "answer cache_threshold when fewer prompt tokens are cached (0: off)",
      min: 0,
      max: 1,
    }),
  }),
  ...section("Failure injection", {
    "failure-injection-rate": float(0, {
      help: "percent (0-100) of requests that fail",
      min: 0,
      max: 100,
      adminUpdatable: true,
    }),
    "failure-types": list({
      help: `failure types to inject (${FAILURE_TYPES.join(", ")}); empty = all`,
      adminUpdatable: true,
    }),
  }),
  ...section("Fake metrics", {
    "fake-metrics": {
      type: "json",
      default: null,
      help: "fixed metric values (JSON object or YAML map)",
      adminUpdatable: true,
    } as Spec<FakeMetricsSpec | null>,
    "fake-metrics-refresh-interval": dur(100, "how often fake metric functions are re-evaluated"),
  }),
  ...section("Datasets", {
    "dataset-path": str("", "SQLite file with recorded conversations"),
    "dataset-url": str("", "downloaded to dataset-path when that file does not exist"),
    "dataset-in-memory": bool(false, "load the whole dataset into memory"),
    "dataset-table-name": str("llmd", "dataset table to read"),
  }),
  ...section("Tokenizer", {
    tokenizer: str("", {
      help: "tokenizer.json (or its directory), or a Hugging Face repo id",
      defaultText: "model",
    }),
    revision: str("main", "Hugging Face revision (branch, tag or commit) of the tokenizer"),
    "force-dummy-tokenizer": bool(false, "always use the built-in tokenizer"),
    "tokenizers-cache-dir": str("", "Hugging Face hub cache (default HF_HUB_CACHE, $HF_HOME/hub)"),
    "render-url": str("http://localhost:8082", "vLLM render sidecar, used when given explicitly"),
    "render-timeout": dur(30_000, "render sidecar request timeout"),
    "mm-render-timeout": dur(60_000, "render sidecar timeout for messages with images"),
  }),
  ...section("Embeddings", {
    "default-embedding-dimensions": int(384, { help: "embedding vector size", min: 1 }),
  }, { planned: true }),
  ...section("TLS", {
    "ssl-certfile": str("", "PEM certificate (with ssl-keyfile) to serve HTTPS"),
    "ssl-keyfile": str("", "PEM private key (with ssl-certfile)"),
    "self-signed-certs": later(bool(false, "serve HTTPS with a generated self-signed certificate")),
  }),
  ...section("Logging", {
    "log-level": enumOf(["debug", "info", "warn", "error"] as const, "info", "log level"),
    "log-format": enumOf(["text", "json"] as const, "text", "text, or json (one object per line)"),
    v: int(0, {
      help: "klog verbosity (1 warning, 2 info, 4 debug, 5 trace); 0 = use log-level",
      min: 0,
    }),
    add_dir_header: bool(false, { help: "klog flag", ignored: true }),
    alsologtostderr: bool(false, { help: "klog flag", ignored: true }),
    log_backtrace_at: str("", { help: "klog flag", ignored: true }),
    log_dir: str("", { help: "klog flag", ignored: true }),
    log_file: str("", { help: "klog flag", ignored: true }),
    log_file_max_size: int(1800, { help: "klog flag", ignored: true }),
    logtostderr: bool(true, { help: "klog flag (logs always go to stderr)", ignored: true }),
    one_output: bool(false, { help: "klog flag", ignored: true }),
    skip_headers: bool(false, { help: "klog flag", ignored: true }),
    skip_log_headers: bool(false, { help: "klog flag", ignored: true }),
    stderrthreshold: str("", { help: "klog flag", ignored: true }),
    vmodule: str("", { help: "klog flag", ignored: true }),
  }),
  ...section("Ignored vLLM flags", {
    "tensor-parallel-size": int(1, { help: "vLLM flag", ignored: true }),
    "enforce-eager": bool(false, { help: "vLLM flag", ignored: true, negatable: true }),
    "enable-prefix-caching": bool(true, {
      help: "vLLM flag (behaves as enabled)",
      ignored: true,
      negatable: true,
    }),
    "mm-processor-kwargs": str("", { help: "vLLM flag", ignored: true }),
    "ec-transfer-config": str("", { help: "vLLM flag", ignored: true }),
  }),
  ...section("Aliases", {
    lora: alias("list", "lora-modules", true, "comma-separated adapter names"),
    "max-running-requests": alias("int", "max-num-seqs", true, "requests running at once"),
    "ttft-mean": alias("duration", "time-to-first-token", false, "seed 004 name, milliseconds"),
    "itl-mean": alias("duration", "inter-token-latency", false, "seed 004 name, milliseconds"),
    "queue-depth": alias("int", "max-waiting-queue-length", false, "seed 004 name"),
  }),
};

export type Options = typeof OPTIONS;
export type OptionName = keyof Options;

/** Names that hold a value (aliases excluded). */
export type ConfigKey = {
  [K in OptionName]: Options[K] extends AliasSpec ? never : K;
}[OptionName];

export type Config = {
  -readonly [K in ConfigKey]: Options[K] extends OptionSpec<infer T> ? T : never;
};

export type NamedOption = (OptionSpec | AliasSpec) & { name: string };

export const OPTION_LIST: readonly NamedOption[] = Object.entries(OPTIONS).map((
  [name, o],
) => ({ name, ...(o as OptionSpec | AliasSpec) }));

export function isAlias(o: OptionSpec | AliasSpec): o is AliasSpec {
  return "target" in o;
}

const BY_NAME = new Map<string, NamedOption>(OPTION_LIST.map((o) => [o.name, o]));

/** Looks a flag up, accepting `_`/`-` spelling variants (klog uses `_`, vLLM `-`). */
export function findOption(name: string): NamedOption | undefined {
  return BY_NAME.get(name) ?? BY_NAME.get(name.replaceAll("-", "_")) ??
    BY_NAME.get(name.replaceAll("_", "-"));
}

export const VALUE_OPTIONS: readonly (OptionSpec & { name: ConfigKey })[] = OPTION_LIST.filter(
  (o): o is OptionSpec & { name: ConfigKey } => !isAlias(o),
);

export const ADMIN_KEYS: readonly ConfigKey[] = VALUE_OPTIONS.filter((o) => o.adminUpdatable)
  .map((o) => o.name);

/** (std-dev, mean) pairs with the "std-dev ≤ 30% of mean" rule. */
export const STD_DEV_RULES = [
  ["time-to-first-token-std-dev", "time-to-first-token"],
  ["inter-token-latency-std-dev", "inter-token-latency"],
  ["kv-cache-transfer-latency-std-dev", "kv-cache-transfer-latency"],
  ["time-to-generate-image-std-dev", "time-to-generate-image"],
] as const satisfies readonly (readonly [ConfigKey, ConfigKey])[];

/** (min, max) tool-call pairs: min must not exceed max. */
export const MIN_MAX_RULES = [
  ["min-tool-call-integer-param", "max-tool-call-integer-param"],
  ["min-tool-call-number-param", "max-tool-call-number-param"],
  ["min-tool-call-array-param-length", "max-tool-call-array-param-length"],
] as const satisfies readonly (readonly [ConfigKey, ConfigKey])[];

export const BLOCK_SIZES = [8, 16, 32, 64, 128] as const;
