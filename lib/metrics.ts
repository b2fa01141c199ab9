/**
 * vLLM's Prometheus metrics (metrics.md), on a private prom-client Registry
 * per simulator: several simulators (DP ranks, tests) share one process, so
 * the global registry is never used.
 *
 * Gauges are computed at scrape time from the engine's true state, so they
 * cannot drift. Counters and histograms are fed by an EngineObserver and see
 * each finished request once; a cancelled request observes no histogram and
 * no success. The only per-token work is pushing one inter-token gap onto the
 * job's buffer; everything else happens once per request.
 *
 * With `fake-metrics` configured, a separate registry holding only the fake
 * values is served instead (never a mix). It is rebuilt when the config's
 * fake-metrics object changes, and function values (`ramp:0:10:5s`, ...) are
 * re-evaluated on a timer every fake-metrics-refresh-interval.
 */
import { Counter, Gauge, type Metric, Registry } from "prom-client";
import type { Config, FakeMetricsSpec } from "./config.ts";
import { parseDuration } from "./duration.ts";
import type { Engine, EngineObserver, Job } from "./engine.ts";

/** What the metrics need from the simulator (kept narrow to avoid an import cycle). */
export interface MetricsHost {
  readonly config: Config;
  readonly engine: Engine;
  readonly models: { readonly displayName: string };
  readonly log?: { error(msg: string, fields?: Record<string, unknown>): void };
  /** The KV cache, when there is one (its used blocks; the prefix counters count only then). */
  readonly kv?: { readonly blocks: { readonly usage: number } } | null;
}

export const CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

// Bucket upper bounds, copied from metrics.md (T, P, R); +Inf is implicit.
const bounds = (list: string): number[] => list.split(" ").map(Number);
export const BUCKETS_TTFT = bounds(
  "0.001 0.005 0.01 0.02 0.04 0.06 0.08 0.1 0.25 0.5 0.75 1.0 2.5 5.0 7.5 10.0 20.0 40.0 80.0 160.0 640.0 2560.0",
);
export const BUCKETS_TPOT = bounds(
  "0.01 0.025 0.05 0.075 0.1 0.15 0.2 0.3 0.4 0.5 0.75 1.0 2.5 5.0 7.5 10.0 20.0 40.0 80.0",
);
export const BUCKETS_REQUEST = bounds(
  "0.3 0.5 0.8 1.0 1.5 2.0 2.5 5.0 10.0 15.0 20.0 30.0 40.0 50.0 60.0 120.0 240.0 480.0 960.0 1920.0 7680.0",
);

/** 1, 2, 5, 10, 20, 50, ... every value ≤ max (vLLM's build_1_2_5_buckets). */
export function buckets125(max: number): number[] {
  const out: number[] = [];
  for (let exp = 1;; exp *= 10) {
    for (const m of [1, 2, 5]) {
      if (m * exp > max) return out;
      out.push(m * exp);
    }
  }
}

// ---------- fake metric functions ----------

const FAKE_FUNC = /^(oscillate|ramp|rampreset|squarewave):(-?[\d.]+):(-?[\d.]+):(.+)$/;

/**
 * Value of a fake field `elapsedMs` after it was set: a plain number, or a
 * function string `fun:start:end:period` (already validated by the config).
 */
export function fakeValueAt(v: number | string, elapsedMs: number): number {
  if (typeof v === "number") return v;
  const m = FAKE_FUNC.exec(v);
  if (!m) return Number(v) || 0;
  const start = Number(m[2]);
  const end = Number(m[3]);
  const period = parseDuration(m[4]);
  const phase = (elapsedMs % period) / period;
  switch (m[1]) {
    case "oscillate":
      return (start + end) / 2 + ((end - start) / 2) * Math.sin(2 * Math.PI * phase);
    case "ramp":
      return elapsedMs >= period ? end : start + (end - start) * (elapsedMs / period);
    case "rampreset":
      return start + (end - start) * phase;
    default: // squarewave
      return phase < 0.5 ? start : end;
  }
}

/**
 * What prom-client's Registry reads from a label-free histogram: cumulative
 * `_bucket` series (then +Inf), `_sum` and `_count`.
 */
function histogramSnapshot(
  name: string,
  help: string,
  bounds: readonly number[],
  cumulative: readonly number[],
  count: number,
  sum: number,
) {
  const bucket = `${name}_bucket`;
  return {
    name,
    help,
    type: "histogram" as const,
    aggregator: "sum" as const,
    values: [
      ...bounds.map((le, i) => ({ labels: { le }, value: cumulative[i], metricName: bucket })),
      { labels: { le: "+Inf" }, value: count, metricName: bucket },
      { labels: {}, value: sum, metricName: `${name}_sum` },
      { labels: {}, value: count, metricName: `${name}_count` },
    ],
  };
}

/**
 * A histogram whose per-bucket counts are set whole (fake metrics).
 * prom-client's Histogram can only observe single values, so this implements
 * the small shape its Registry reads (name, help, type, get()).
 */
class CountsHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly #cumulative: number[];
  readonly #count: number;
  readonly #sum: number;

  /** `counts[i]` falls in bucket i; index bounds.length is +Inf; missing → 0. */
  constructor(
    readonly name: string,
    readonly help: string,
    readonly bounds: number[],
    counts: number[],
  ) {
    let acc = 0;
    let sum = 0;
    this.#cumulative = bounds.map((upper, i) => {
      const c = counts[i] ?? 0;
      const lower = i === 0 ? 0 : bounds[i - 1];
      sum += c * (lower + upper) / 2; // a plausible sum: each bucket's midpoint
      return acc += c;
    });
    // The +Inf bucket takes the rest (including any surplus entries).
    const rest = counts.slice(bounds.length).reduce((a, b) => a + b, 0);
    sum += rest * (bounds.at(-1) ?? 0);
    this.#count = acc + rest;
    this.#sum = sum;
  }

  get() {
    return Promise.resolve(
      histogramSnapshot(
        this.name,
        this.help,
        this.bounds,
        this.#cumulative,
        this.#count,
        this.#sum,
      ),
    );
  }
}

/**
 * A histogram without labels, for the real registry. prom-client's Histogram
 * keys its buckets by the bound's string form, so every observe() formats a
 * float (several hundred ns, ~100 per answer with inter-token latency); this
 * one counts into an array. Its exposition is the same: the Registry reads
 * name, help, type and get().
 */
class LiveHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly #counts: Float64Array;
  /** The bucket a 0 falls in (-1: none), found once rather than per call. */
  readonly #zeroBucket: number;
  #count = 0;
  #sum = 0;

  constructor(readonly name: string, readonly help: string, readonly bounds: readonly number[]) {
    this.#counts = new Float64Array(bounds.length);
    this.#zeroBucket = bounds.findIndex((b) => b >= 0);
  }

  /** Records `value` (non-finite values are ignored). */
  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]) {
        this.#counts[i]++;
        break;
      }
    }
    this.#count++;
    this.#sum += value;
  }

  /** Records `n` observations of 0 (the sum is unchanged). */
  observeZeros(n: number): void {
    if (n <= 0) return;
    if (this.#zeroBucket >= 0) this.#counts[this.#zeroBucket] += n;
    this.#count += n;
  }

  get() {
    let acc = 0;
    const cumulative = Array.from(this.#counts, (c) => acc += c);
    return Promise.resolve(
      histogramSnapshot(this.name, this.help, this.bounds, cumulative, this.#count, this.#sum),
    );
  }
}

/** A duration in ms as seconds, clamped at 0. */
const seconds = (ms: number) => Math.max(0, ms) / 1000;

/**
 * A counter for the real registry, optionally split by one label. As with
 * LiveHistogram, prom-client's Counter hashes its labels on every inc()
 * (and `labels(x)` binds a new function); this one adds to a number. The
 * exposition is the same: label sets appear in the order they were first
 * incremented.
 */
class LiveCounter {
  readonly type = "counter";
  readonly aggregator = "sum";
  readonly #values = new Map<string, number>();

  /** `label`: the one label's name, or null for a plain counter (starts at 0). */
  constructor(readonly name: string, readonly help: string, readonly label: string | null = null) {
    if (label === null) this.#values.set("", 0);
  }

  /** Adds `n` (≥ 0); `labelValue` only for a labelled counter. */
  inc(n: number, labelValue = ""): void {
    this.#values.set(labelValue, (this.#values.get(labelValue) ?? 0) + n);
  }

  get() {
    const label = this.label;
    const values = [];
    for (const [v, value] of this.#values) {
      values.push({ value, labels: label === null ? {} : { [label]: v } });
    }
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    });
  }
}

/** Inter-token gaps (seconds) of one running job, observed when it finishes. */
interface JobGaps {
  gaps: number[];
  /** Gaps of exactly 0 (tokens emitted in the same burst), counted, not stored. */
  zeros: number;
}

// ---------- metric families ----------

const HELP = {
  running: "Number of requests currently running on GPU.",
  waiting: "Number of requests waiting to be processed.",
  kv: "KV-cache usage. 1 means 100 percent usage.",
  gpuKv: "GPU KV-cache usage. 1 means 100 percent usage.",
  lora: "Running stats on lora requests.",
  cacheConfig: "Information of the LLMEngine CacheConfig",
  prefixHits: "Prefix cache hits, in terms of number of cached tokens.",
  prefixQueries: "Prefix cache queries, in terms of number of queried tokens.",
  promptTokens: "Number of prefill tokens processed.",
  generationTokens: "Number of generation tokens processed.",
  success: "Count of successfully processed requests.",
};

/** Histogram families: name, HELP, buckets kind, fake-metrics field. */
const HISTOGRAMS = [
  [
    "vllm:time_to_first_token_seconds",
    "Histogram of time to first token in seconds.",
    "T",
    "ttft-buckets-values",
  ],
  [
    "vllm:time_per_output_token_seconds",
    "Histogram of time per output token in seconds.",
    "P",
    "tpot-buckets-values",
  ],
  [
    "vllm:inter_token_latency_seconds",
    "Histogram of inter-token latency in seconds.",
    "P",
    null,
  ],
  [
    "vllm:request_time_per_output_token_seconds",
    "Histogram of time_per_output_token_seconds per request.",
    "P",
    "tpot-buckets-values",
  ],
  [
    "vllm:e2e_request_latency_seconds",
    "Histogram of e2e request latency in seconds.",
    "R",
    "e2erl-buckets-values",
  ],
  [
    "vllm:request_queue_time_seconds",
    "Histogram of time spent in WAITING phase for request.",
    "R",
    "queue-time-buckets-values",
  ],
  [
    "vllm:request_inference_time_seconds",
    "Histogram of time spent in RUNNING phase for request.",
    "R",
    "inf-time-buckets-values",
  ],
  [
    "vllm:request_prefill_time_seconds",
    "Histogram of time spent in PREFILL phase for request.",
    "R",
    "prefill-time-buckets-values",
  ],
  [
    "vllm:request_decode_time_seconds",
    "Histogram of time spent in DECODE phase for request.",
    "R",
    "decode-time-buckets-values",
  ],
  [
    "vllm:request_prompt_tokens",
    "Number of prefill tokens processed.",
    "N",
    "request-prompt-tokens",
  ],
  [
    "vllm:request_generation_tokens",
    "Number of generation tokens processed.",
    "N",
    "request-generation-tokens",
  ],
  [
    "vllm:request_params_max_tokens",
    "Histogram of the max_tokens request parameter.",
    "N",
    "request-params-max-tokens",
  ],
  [
    "vllm:max_num_generation_tokens",
    "Histogram of maximum number of requested generation tokens.",
    "N",
    "request-max-generation-tokens",
  ],
] as const;

type HistName = (typeof HISTOGRAMS)[number][0];
type Field = keyof FakeMetricsSpec;
const LORA_LABELS = ["max_lora", "running_lora_adapters", "waiting_lora_adapters"] as const;
/** Finish reasons whose success series exist from the start, as in vLLM. */
const INITIAL_REASONS = ["stop", "length", "abort"];

/** The fake-metrics fields that may hold a function of time. */
const FAKE_GAUGE_FIELDS = ["running-requests", "waiting-requests", "kv-cache-usage"] as const;
type FakeGaugeField = (typeof FAKE_GAUGE_FIELDS)[number];

export class Metrics {
  readonly #host: MetricsHost;
  readonly #real: Registry;
  readonly #hist: Record<HistName, LiveHistogram>;
  readonly #promptTokens: LiveCounter;
  readonly #generationTokens: LiveCounter;
  readonly #prefixHits: LiveCounter;
  readonly #prefixQueries: LiveCounter;
  readonly #success: LiveCounter;
  readonly #lora: Gauge<(typeof LORA_LABELS)[number]>;
  #loraKey = "";
  /** Inter-token gaps of running jobs, observed when a job finishes. */
  readonly #gaps = new Map<Job, JobGaps>();
  readonly #observer: EngineObserver;

  /** The fake registry and the config object it was built from. */
  #fake: Registry | null = null;
  #fakeSpec: FakeMetricsSpec | null = null;
  #fakeValues: Record<FakeGaugeField, number> = {
    "running-requests": 0,
    "waiting-requests": 0,
    "kv-cache-usage": 0,
  };
  /** When each function-valued field got its current expression (restarts its clock). */
  readonly #fakeSince = new Map<FakeGaugeField, { expr: string; since: number }>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** The fake spec whose evaluation last failed (logged once). */
  #fakeFailed: FakeMetricsSpec | null = null;

  constructor(host: MetricsHost) {
    this.#host = host;
    const cfg = host.config;
    const engine = host.engine;
    const reg = this.#real = this.#registry();
    // Read at scrape time: the cache's used blocks are current at every request start and end.
    const kvUsage = () => host.kv?.blocks.usage ?? 0;
    const updateLora = () => this.#updateLora();

    new Gauge({
      name: "vllm:num_requests_running",
      help: HELP.running,
      registers: [reg],
      collect() {
        this.set(engine.runningCount);
      },
    });
    new Gauge({
      name: "vllm:num_requests_waiting",
      help: HELP.waiting,
      registers: [reg],
      collect() {
        this.set(engine.waitingCount);
      },
    });
    for (
      const [name, help] of [["vllm:kv_cache_usage_perc", HELP.kv], [
        "vllm:gpu_cache_usage_perc",
        HELP.gpuKv,
      ]]
    ) {
      new Gauge({
        name,
        help,
        registers: [reg],
        collect() {
          this.set(kvUsage());
        },
      });
    }
    this.#lora = new Gauge({
      name: "vllm:lora_requests_info",
      help: HELP.lora,
      labelNames: LORA_LABELS,
      registers: [reg],
      collect() {
        updateLora(); // max-loras may change with the config
      },
    });
    this.#cacheConfig(reg, cfg);

    const counter = (name: string, help: string, label: string | null = null) => {
      const c = new LiveCounter(name, help, label);
      // The Registry only reads name/help/type/get(), which LiveCounter provides.
      reg.registerMetric(c as unknown as Metric);
      return c;
    };
    this.#prefixHits = counter("vllm:prefix_cache_hits_total", HELP.prefixHits);
    this.#prefixQueries = counter("vllm:prefix_cache_queries_total", HELP.prefixQueries);
    this.#promptTokens = counter("vllm:prompt_tokens_total", HELP.promptTokens);
    this.#generationTokens = counter("vllm:generation_tokens_total", HELP.generationTokens);
    this.#success = counter("vllm:request_success_total", HELP.success, "finish_reason");
    for (const r of INITIAL_REASONS) this.#success.inc(0, r);

    const hist = {} as Record<HistName, LiveHistogram>;
    for (const [name, help, kind] of HISTOGRAMS) {
      hist[name] = new LiveHistogram(name, help, this.#buckets(kind));
      // The Registry only reads name/help/type/get(), which LiveHistogram provides.
      reg.registerMetric(hist[name] as unknown as Metric);
    }
    this.#hist = hist;
    this.#updateLora(true);

    this.#observer = {
      queued: (job) => {
        if (job.spec.lora !== null) this.#updateLora();
      },
      started: (job) => {
        // Only with the KV cache on (also while it sleeps: queries still count).
        if (host.kv) {
          this.#prefixHits.inc(job.spec.cachedTokens);
          this.#prefixQueries.inc(job.spec.promptTokens);
        }
        if (job.spec.lora !== null) this.#updateLora();
      },
      tokens: (job, from, to, now) => {
        let g = this.#gaps.get(job);
        if (!g) this.#gaps.set(job, g = { gaps: [], zeros: 0 });
        if (from === 0) {
          this.#promptTokens.inc(job.spec.promptTokens); // prefill is done
        } else {
          // phases.lastToken still holds the previous step's time here.
          g.gaps.push((now - job.phases.lastToken) / 1000);
        }
        // The other steps of the burst follow their predecessor with no gap.
        g.zeros += to - from - 1;
      },
      finished: (job) => this.#finished(job),
      cancelled: (job) => {
        this.#gaps.delete(job);
        this.#generationTokens.inc(job.emittedTokens);
        if (job.spec.lora !== null) this.#updateLora();
      },
    };
    engine.observers.push(this.#observer);
    this.#tick();
  }

  /** The exposition: only the fake values while fake-metrics is set. */
  exposition(): Promise<string> {
    this.#syncFake();
    return (this.#fake ?? this.#real).metrics();
  }

  /** Stops the refresh timer and detaches from the engine (server shutdown). */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const i = this.#host.engine.observers.indexOf(this.#observer);
    if (i >= 0) this.#host.engine.observers.splice(i, 1);
    this.#gaps.clear();
  }

  #registry(): Registry {
    const reg = new Registry();
    reg.setDefaultLabels({ model_name: this.#host.models.displayName });
    return reg;
  }

  #buckets(kind: "T" | "P" | "R" | "N"): number[] {
    switch (kind) {
      case "T":
        return BUCKETS_TTFT;
      case "P":
        return BUCKETS_TPOT;
      case "R":
        return BUCKETS_REQUEST;
      case "N":
        return buckets125(this.#host.config["max-model-len"]);
    }
  }

  #cacheConfig(reg: Registry, cfg: Config): void {
    new Gauge({
      name: "vllm:cache_config_info",
      help: HELP.cacheConfig,
      labelNames: ["block_size", "num_gpu_blocks"],
      registers: [reg],
    }).set({ block_size: cfg["block-size"], num_gpu_blocks: cfg["kv-cache-size"] }, 1);
  }

  #finished(job: Job): void {
    const gaps = this.#gaps.get(job);
    this.#gaps.delete(job);
    const { spec, phases: p } = job;
    const h = this.#hist;
    const emitted = job.emittedTokens;
    this.#generationTokens.inc(emitted);
    const reason = spec.finishReasons[0];
    if (reason !== undefined) this.#success.inc(1, reason);

    const s = seconds;
    h["vllm:time_to_first_token_seconds"].observe(s(p.firstToken - p.arrival));
    h["vllm:e2e_request_latency_seconds"].observe(s(p.end - p.arrival));
    h["vllm:request_queue_time_seconds"].observe(s(p.start - p.arrival));
    h["vllm:request_prefill_time_seconds"].observe(s(p.firstToken - p.start));
    h["vllm:request_decode_time_seconds"].observe(s(p.lastToken - p.firstToken));
    h["vllm:request_inference_time_seconds"].observe(s(p.lastToken - p.start));
    if (job.steps > 1) {
      const tpot = s(p.lastToken - p.firstToken) / (job.steps - 1);
      h["vllm:request_time_per_output_token_seconds"].observe(tpot);
    }
    if (gaps) {
      // time_per_output_token is vLLM's older name for the per-gap
      // inter-token latency: both observe every gap (the reference does too).
      const itl = h["vllm:inter_token_latency_seconds"];
      const perToken = h["vllm:time_per_output_token_seconds"];
      for (const g of gaps.gaps) {
        itl.observe(g);
        perToken.observe(g);
      }
      itl.observeZeros(gaps.zeros);
      perToken.observeZeros(gaps.zeros);
    }
    h["vllm:request_prompt_tokens"].observe(spec.promptTokens);
    // A prefill-only request (embeddings) generates nothing to count.
    if (!spec.prefillOnly) {
      h["vllm:request_generation_tokens"].observe(emitted);
      h["vllm:max_num_generation_tokens"].observe(job.steps);
    }
    if (spec.maxTokensParam !== null) {
      h["vllm:request_params_max_tokens"].observe(spec.maxTokensParam);
    }
    if (spec.lora !== null) this.#updateLora();
  }

  /** Replaces the single lora_requests_info series when the adapter sets change. */
  #updateLora(force = false): void {
    const engine = this.#host.engine;
    const labels = {
      max_lora: String(this.#host.config["max-loras"]),
      running_lora_adapters: [...engine.runningLoras.keys()].join(","),
      waiting_lora_adapters: engine.waitingLoras().join(","),
    };
    const key =
      `${labels.max_lora}|${labels.running_lora_adapters}|${labels.waiting_lora_adapters}`;
    if (!force && key === this.#loraKey) return;
    this.#loraKey = key;
    this.#lora.reset();
    this.#lora.set(labels, Date.now() / 1000);
  }

  // ---------- fake metrics ----------

  /** Re-evaluates fake function values every fake-metrics-refresh-interval. */
  #tick = (): void => {
    if (this.#closed) return;
    try {
      this.#syncFake();
      if (this.#fakeSpec) this.#evalFake();
    } catch (e) {
      // Validation keeps bad values out; should one slip through, a timer
      // callback must still never end the process. Logged once per spec.
      if (this.#fakeFailed !== this.#fakeSpec) {
        this.#fakeFailed = this.#fakeSpec;
        this.#host.log?.error("fake metrics evaluation failed", { error: String(e) });
      }
    }
    // Unref'd: the timer never keeps the process alive; close() clears it.
    const timer = setTimeout(this.#tick, this.#host.config["fake-metrics-refresh-interval"]);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  };

  /** Rebuilds the fake registry when the config's fake-metrics object changed. */
  #syncFake(): void {
    const spec = this.#host.config["fake-metrics"];
    if (spec === this.#fakeSpec) return;
    this.#fakeSpec = spec;
    if (!spec) {
      this.#fake = null;
      this.#fakeSince.clear();
      return;
    }
    this.#evalFake();
    this.#fake = this.#buildFake(spec);
  }

  #evalFake(): void {
    const spec = this.#fakeSpec;
    if (!spec) return;
    const now = performance.now();
    for (const f of FAKE_GAUGE_FIELDS) {
      const v = spec[f];
      if (typeof v !== "string") {
        this.#fakeSince.delete(f);
        this.#fakeValues[f] = v ?? 0;
        continue;
      }
      let since = this.#fakeSince.get(f);
      if (since?.expr !== v) this.#fakeSince.set(f, since = { expr: v, since: now });
      const x = fakeValueAt(v, now - since.since);
      // Request counts are whole numbers; the KV usage is a fraction.
      this.#fakeValues[f] = f === "kv-cache-usage" ? x : Math.round(x);
    }
  }

  #buildFake(spec: FakeMetricsSpec): Registry {
    const reg = this.#registry();
    const values = this.#fakeValues;
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers: [reg],
        collect() {
          this.set(read());
        },
      });
    gauge("vllm:num_requests_running", HELP.running, () => values["running-requests"]);
    gauge("vllm:num_requests_waiting", HELP.waiting, () => values["waiting-requests"]);
    gauge("vllm:kv_cache_usage_perc", HELP.kv, () => values["kv-cache-usage"]);
    gauge("vllm:gpu_cache_usage_perc", HELP.gpuKv, () => values["kv-cache-usage"]);

    const lora = new Gauge({
      name: "vllm:lora_requests_info",
      help: HELP.lora,
      labelNames: LORA_LABELS,
      registers: [reg],
    });
    const maxLora = String(this.#host.config["max-loras"]);
    for (const l of spec.loras ?? []) {
      lora.set({
        max_lora: maxLora,
        running_lora_adapters: l.running,
        waiting_lora_adapters: l.waiting,
      }, l.timestamp);
    }
    this.#cacheConfig(reg, this.#host.config);

    const counter = (name: string, help: string, field: Field) => {
      const c = new Counter({ name, help, registers: [reg] });
      const v = spec[field];
      c.inc(typeof v === "number" ? v : 0);
    };
    counter("vllm:prefix_cache_hits_total", HELP.prefixHits, "prefix-cache-hits");
    counter("vllm:prefix_cache_queries_total", HELP.prefixQueries, "prefix-cache-queries");
    counter("vllm:prompt_tokens_total", HELP.promptTokens, "total-prompt-tokens");
    counter("vllm:generation_tokens_total", HELP.generationTokens, "total-generation-tokens");
    const success = new Counter({
      name: "vllm:request_success_total",
      help: HELP.success,
      labelNames: ["finish_reason"],
      registers: [reg],
    });
    for (const [reason, n] of Object.entries(spec["request-success-total"] ?? {})) {
      success.labels(reason).inc(n);
    }

    for (const [name, help, kind, field] of HISTOGRAMS) {
      const counts = field === null ? [] : spec[field] ?? [];
      const h = new CountsHistogram(name, help, this.#buckets(kind), counts);
      // The Registry only reads name/help/type/get(), which CountsHistogram provides.
      reg.registerMetric(h as unknown as Metric);
    }
    return reg;
  }
}
