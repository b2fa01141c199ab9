/** GET /metrics: promtool-valid exposition, real values, gauges, fake metrics, metrics port. */
import assert from "node:assert/strict";
import { freePort, retryPortInUse, sleep, startSim, type TestServer } from "./helpers.ts";

// ---------- helpers ----------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Exposition {
  text: string;
  samples: Sample[];
  /** `# TYPE` of each family. */
  types: Map<string, string>;
  help: Map<string, string>;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function parse(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      (meta[1] === "TYPE" ? types : help).set(meta[2], meta[3]);
      continue;
    }
    const m = LINE.exec(line);
    assert.ok(m, `unparsable line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(LABEL)) labels[l[1]] = l[2];
    const value = m[3] === "+Inf" ? Infinity : Number(m[3]);
    assert.ok(!Number.isNaN(value), `bad value: ${line}`);
    samples.push({ name: m[1], labels, value });
  }
  return { text, samples, types, help };
}

/** Samples named `name` whose labels include `labels`. */
function find(e: Exposition, name: string, labels: Record<string, string> = {}): Sample[] {
  return e.samples.filter((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
}

/** The single matching sample's value. */
function val(e: Exposition, name: string, labels: Record<string, string> = {}): number {
  const found = find(e, name, labels);
  assert.equal(found.length, 1, `${name}${JSON.stringify(labels)}: ${found.length} series`);
  return found[0].value;
}

async function scrape(url: string): Promise<Exposition> {
  const res = await fetch(url + "/metrics");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  return parse(await res.text());
}

async function promtool(body: string): Promise<{ code: number; output: string }> {
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(body));
  await w.close();
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, output: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

/**
 * promtool parses the body (exit 1 on any format error) and lints it (exit 3
 * on lint problems). vLLM's names contain ':', which its linter flags as a
 * recording-rule convention; those names are interface, so that one rule is
 * tolerated and the same body with ':' replaced must lint perfectly clean.
 */
async function assertPromtoolClean(body: string): Promise<void> {
  const raw = await promtool(body);
  assert.ok(raw.code === 0 || raw.code === 3, `promtool exit ${raw.code}: ${raw.output}`);
  const other = raw.output.split("\n").filter((l) =>
    l.trim() !== "" && !l.endsWith("metric names should not contain ':'")
  );
  assert.deepEqual(other, [], "promtool reported problems");
  const renamed = await promtool(body.replaceAll("vllm:", "vllm_"));
  assert.equal(renamed.code, 0, renamed.output);
  assert.equal(renamed.output.trim(), "");
}

async function poll<T>(
  what: string,
  get: () => Promise<T>,
  ok: (v: T) => boolean,
  timeoutMs = 3000,
): Promise<T> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (performance.now() > until) assert.fail(`${what}: last value ${JSON.stringify(v)}`);
    await sleep(15);
  }
}

const chat = (extra: Record<string, unknown> = {}) => ({
  model: "test-model",
  messages: [{ role: "user", content: "Tell me a story about metrics." }],
  max_tokens: 5,
  ignore_eos: true,
  ...extra,
});

const FAMILIES: Record<string, string> = {
  "vllm:num_requests_running": "gauge",
  "vllm:num_requests_waiting": "gauge",
  "vllm:kv_cache_usage_perc": "gauge",
  "vllm:gpu_cache_usage_perc": "gauge",
  "vllm:lora_requests_info": "gauge",
  "vllm:cache_config_info": "gauge",
  "vllm:prefix_cache_hits_total": "counter",
  "vllm:prefix_cache_queries_total": "counter",
  "vllm:prompt_tokens_total": "counter",
  "vllm:generation_tokens_total": "counter",
  "vllm:request_success_total": "counter",
  "vllm:time_to_first_token_seconds": "histogram",
  "vllm:time_per_output_token_seconds": "histogram",
  "vllm:inter_token_latency_seconds": "histogram",
  "vllm:request_time_per_output_token_seconds": "histogram",
  "vllm:e2e_request_latency_seconds": "histogram",
  "vllm:request_queue_time_seconds": "histogram",
  "vllm:request_inference_time_seconds": "histogram",
  "vllm:request_prefill_time_seconds": "histogram",
  "vllm:request_decode_time_seconds": "histogram",
  "vllm:request_prompt_tokens": "histogram",
  "vllm:request_generation_tokens": "histogram",
  "vllm:request_params_max_tokens": "histogram",
  "vllm:max_num_generation_tokens": "histogram",
};

const T =
  "0.001 0.005 0.01 0.02 0.04 0.06 0.08 0.1 0.25 0.5 0.75 1 2.5 5 7.5 10 20 40 80 160 640 2560";
const P = "0.01 0.025 0.05 0.075 0.1 0.15 0.2 0.3 0.4 0.5 0.75 1 2.5 5 7.5 10 20 40 80";
const R = "0.3 0.5 0.8 1 1.5 2 2.5 5 10 15 20 30 40 50 60 120 240 480 960 1920 7680";

function les(e: Exposition, family: string): string {
  return find(e, `${family}_bucket`).map((s) => s.labels.le).join(" ");
}

function assertFamilies(e: Exposition, model: string): void {
  for (const [name, type] of Object.entries(FAMILIES)) {
    assert.equal(e.types.get(name), type, `# TYPE ${name}`);
    assert.ok(e.help.get(name), `# HELP ${name}`);
  }
  assert.equal(e.types.size, Object.keys(FAMILIES).length, "no other families");
  for (const s of e.samples) assert.equal(s.labels.model_name, model, s.name);
}

// ---------- real metrics ----------

Deno.test("exposition: every family, exact buckets, model_name everywhere, promtool", async () => {
  await using s = await startSim([
    "--served-model-name",
    "alias-a",
    "alias-b",
    "--max-model-len",
    "600",
    "--block-size",
    "32",
    "--kv-cache-size",
    "777",
  ]);
  const res = await s.post("/v1/completions", {
    model: "alias-b",
    prompt: "one two three",
    max_tokens: 2,
  });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  const e = await scrape(s.url);
  assertFamilies(e, "alias-a");
  assert.equal(
    e.help.get("vllm:num_requests_running"),
    "Number of requests currently running on GPU.",
  );
  const P1 = `${P} +Inf`;
  assert.equal(les(e, "vllm:time_to_first_token_seconds"), `${T} +Inf`);
  for (
    const f of [
      "time_per_output_token_seconds",
      "inter_token_latency_seconds",
      "request_time_per_output_token_seconds",
    ]
  ) assert.equal(les(e, `vllm:${f}`), P1, f);
  for (const f of ["e2e", "queue_time", "inference_time", "prefill_time", "decode_time"]) {
    const name = f === "e2e" ? "vllm:e2e_request_latency_seconds" : `vllm:request_${f}_seconds`;
    assert.equal(les(e, name), `${R} +Inf`, name);
  }
  for (
    const f of [
      "request_prompt_tokens",
      "request_generation_tokens",
      "request_params_max_tokens",
      "max_num_generation_tokens",
    ]
  ) assert.equal(les(e, `vllm:${f}`), "1 2 5 10 20 50 100 200 500 +Inf", f);
  assert.equal(
    val(e, "vllm:cache_config_info", { block_size: "32", num_gpu_blocks: "777" }),
    1,
  );
  const lora = find(e, "vllm:lora_requests_info");
  assert.equal(lora.length, 1);
  assert.deepEqual(
    [lora[0].labels.max_lora, lora[0].labels.running_lora_adapters],
    ["1", ""],
  );
  assert.equal(val(e, "vllm:kv_cache_usage_perc"), 0);
  assert.equal(val(e, "vllm:gpu_cache_usage_perc"), 0);
  await assertPromtoolClean(e.text);
});

Deno.test("values after 3 requests: counters, sums, bucket placement", async () => {
  await using s = await startSim([
    "--time-to-first-token",
    "50ms",
    "--inter-token-latency",
    "10ms",
  ]);
  let promptTokens = 0;
  for (let i = 0; i < 3; i++) {
    const res = await s.post("/v1/chat/completions", chat());
    const body = await res.json();
    assert.equal(body.usage.completion_tokens, 5);
    promptTokens += body.usage.prompt_tokens;
  }
  const e = await scrape(s.url);
  await assertPromtoolClean(e.text);
  assert.equal(val(e, "vllm:request_success_total", { finish_reason: "length" }), 3);
  assert.equal(val(e, "vllm:request_success_total", { finish_reason: "stop" }), 0);
  assert.equal(val(e, "vllm:generation_tokens_total"), 15);
  assert.equal(val(e, "vllm:prompt_tokens_total"), promptTokens);
  // The prefix-cache counters count only with the KV cache on (metrics.md).
  assert.equal(val(e, "vllm:prefix_cache_queries_total"), 0);
  assert.equal(val(e, "vllm:prefix_cache_hits_total"), 0);
  assert.equal(val(e, "vllm:request_prompt_tokens_sum"), promptTokens);
  assert.equal(val(e, "vllm:request_prompt_tokens_count"), 3);
  assert.equal(val(e, "vllm:request_generation_tokens_sum"), 15);
  assert.equal(val(e, "vllm:max_num_generation_tokens_sum"), 15);
  assert.equal(val(e, "vllm:request_params_max_tokens_sum"), 15);
  assert.equal(val(e, "vllm:request_params_max_tokens_bucket", { le: "5" }), 3);
  assert.equal(val(e, "vllm:request_params_max_tokens_bucket", { le: "2" }), 0);

  // TTFT 50 ms: nothing below 40 ms, all well under 250 ms even on a loaded box.
  const ttft = "vllm:time_to_first_token_seconds";
  assert.equal(val(e, `${ttft}_count`), 3);
  assert.equal(val(e, `${ttft}_bucket`, { le: "0.04" }), 0);
  assert.equal(val(e, `${ttft}_bucket`, { le: "0.25" }), 3);
  const ttftSum = val(e, `${ttft}_sum`);
  assert.ok(ttftSum >= 0.145 && ttftSum < 0.75, `ttft sum ${ttftSum}`);

  // 4 gaps of ~10 ms per request.
  const itl = "vllm:inter_token_latency_seconds";
  assert.equal(val(e, `${itl}_count`), 12);
  assert.equal(val(e, `${itl}_bucket`, { le: "+Inf" }), 12);
  const itlSum = val(e, `${itl}_sum`);
  assert.ok(itlSum > 0.1 && itlSum < 0.6, `itl sum ${itlSum}`);
  assert.ok(val(e, `${itl}_bucket`, { le: "0.1" }) >= 10);
  // time_per_output_token observes every gap, like inter_token_latency ...
  const tpot = "vllm:time_per_output_token_seconds";
  assert.equal(val(e, `${tpot}_count`), 12);
  assert.ok(Math.abs(val(e, `${tpot}_sum`) - itlSum) < 1e-9, "same gaps as ITL");
  // ... request_time_per_output_token once per request (decode time / (tokens − 1)).
  const rtpot = "vllm:request_time_per_output_token_seconds";
  assert.equal(val(e, `${rtpot}_count`), 3);
  const avg = val(e, `${rtpot}_sum`) / 3;
  assert.ok(avg > 0.008 && avg < 0.05, `${rtpot} avg ${avg}`);
  const decodeSum = val(e, "vllm:request_decode_time_seconds_sum");
  assert.ok(Math.abs(decodeSum - itlSum) < 1e-6, "decode time = Σ gaps");
  for (const name of ["e2e_request_latency", "request_queue_time", "request_inference_time"]) {
    assert.equal(val(e, `vllm:${name}_seconds_count`), 3, name);
  }
  assert.equal(val(e, "vllm:request_queue_time_seconds_bucket", { le: "0.3" }), 3);
  const e2e = val(e, "vllm:e2e_request_latency_seconds_sum");
  const parts = val(e, "vllm:request_queue_time_seconds_sum") +
    val(e, "vllm:request_inference_time_seconds_sum");
  assert.ok(e2e >= parts - 1e-6 && e2e >= 0.26, `e2e ${e2e} vs queue+inference ${parts}`);
  assert.equal(val(e, "vllm:num_requests_running"), 0);
  assert.equal(val(e, "vllm:num_requests_waiting"), 0);
});

Deno.test("gauges follow in-flight requests and drop at once on cancellation", async () => {
  await using s = await startSim(["--max-num-seqs", "2", "--time-to-first-token", "2s"]);
  const ctl = new AbortController();
  const requests = [0, 1, 2, 3].map((i) =>
    fetch(s.url + "/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(chat({ stream: i % 2 === 0 })),
      signal: ctl.signal,
      // Streams are read until the abort: a client that cancels its stream
      // has left, and the server may notice that before the abort.
    }).then((r) => r.body?.pipeTo(new WritableStream())).catch(() => {})
  );
  const gauges = async () => {
    const e = await scrape(s.url);
    return [val(e, "vllm:num_requests_running"), val(e, "vllm:num_requests_waiting")];
  };
  await poll("running 2, waiting 2", gauges, ([r, w]) => r === 2 && w === 2);
  ctl.abort();
  await Promise.all(requests);
  await poll("both gauges 0 after abort", gauges, ([r, w]) => r === 0 && w === 0, 1000);
  const e = await scrape(s.url);
  const successes = find(e, "vllm:request_success_total").reduce((a, x) => a + x.value, 0);
  assert.equal(successes, 0, "cancelled requests count in no success series");
  assert.equal(val(e, "vllm:e2e_request_latency_seconds_count"), 0);
  assert.equal(val(e, "vllm:time_to_first_token_seconds_count"), 0);
  assert.equal(val(e, "vllm:generation_tokens_total"), 0);
});

Deno.test("lora_requests_info: one series, running and waiting adapters, time of change", async () => {
  await using s = await startSim([
    "--lora-modules",
    '{"name":"lora-a"}',
    '{"name":"lora-b"}',
    "--max-loras",
    "1",
    "--max-cpu-loras",
    "2",
    "--time-to-first-token",
    "300ms",
  ]);
  const before = Date.now() / 1000;
  const done = ["lora-a", "lora-b", "lora-a"].map((model) =>
    s.post("/v1/chat/completions", chat({ model, max_tokens: 1 })).then((r) => r.json())
  );
  const lora = async () => find(await scrape(s.url), "vllm:lora_requests_info");
  const busy = await poll(
    "a running, b waiting",
    lora,
    (l) => l.length === 1 && l[0].labels.running_lora_adapters === "lora-a",
  );
  assert.deepEqual(busy[0].labels, {
    max_lora: "1",
    running_lora_adapters: "lora-a",
    waiting_lora_adapters: "lora-b",
    model_name: "test-model",
  });
  assert.ok(busy[0].value >= before - 0.01 && busy[0].value <= Date.now() / 1000);
  await Promise.all(done);
  const idle = await lora();
  assert.equal(idle.length, 1);
  assert.equal(idle[0].labels.running_lora_adapters, "");
  assert.equal(idle[0].labels.waiting_lora_adapters, "");
  assert.ok(idle[0].value > busy[0].value, "value is the time of the last change");
});

Deno.test("--metrics-port serves only /metrics", async () => {
  let port = 0;
  await using s = await retryPortInUse(() =>
    startSim(["--metrics-port", String(port = freePort())])
  );
  const res = await s.post("/v1/completions", { model: "test-model", prompt: "hi", max_tokens: 3 });
  await res.body?.cancel();
  const e = await scrape(`http://127.0.0.1:${port}`);
  assertFamilies(e, "test-model");
  assert.equal(val(e, "vllm:request_prompt_tokens_count"), 1, "rank 0's values");
  const other = await fetch(`http://127.0.0.1:${port}/v1/models`);
  assert.equal(other.status, 404);
  assert.equal((await other.json()).error.code, 404);
});

// ---------- fake metrics ----------

const fakeArgs = (spec: unknown, ...more: string[]) => [
  "--fake-metrics",
  JSON.stringify(spec),
  "--fake-metrics-refresh-interval",
  "20ms",
  ...more,
];

Deno.test("fake metrics: fixed values, loras, buckets, success map, counters, nothing real", async () => {
  await using s = await startSim(fakeArgs(
    {
      "running-requests": 7,
      "waiting-requests": 3,
      "kv-cache-usage": 0.42,
      loras: [
        { running: "a,b", waiting: "c", timestamp: 1700000000 },
        { running: "a", waiting: "", timestamp: 1700000100 },
      ],
      "ttft-buckets-values": [1, 2, 3],
      "e2erl-buckets-values": [0, 4],
      "tpot-buckets-values": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5],
      "request-prompt-tokens": [0, 0, 10],
      "request-success-total": { stop: 20, length: 5 },
      "total-prompt-tokens": 1000,
      "total-generation-tokens": 300,
      "prefix-cache-hits": 50,
      "prefix-cache-queries": 200,
    },
    "--max-loras",
    "2",
  ));
  // A real request must not show anywhere.
  const res = await s.post("/v1/chat/completions", chat());
  assert.equal(res.status, 200);
  await res.body?.cancel();
  const e = await scrape(s.url);
  await assertPromtoolClean(e.text);
  assertFamilies(e, "test-model");
  assert.equal(val(e, "vllm:num_requests_running"), 7);
  assert.equal(val(e, "vllm:num_requests_waiting"), 3);
  assert.equal(val(e, "vllm:kv_cache_usage_perc"), 0.42);
  assert.equal(val(e, "vllm:gpu_cache_usage_perc"), 0.42);
  const lora = find(e, "vllm:lora_requests_info");
  assert.deepEqual(
    lora.map((l) => [
      l.labels.max_lora,
      l.labels.running_lora_adapters,
      l.labels.waiting_lora_adapters,
      l.value,
    ]),
    [["2", "a,b", "c", 1700000000], ["2", "a", "", 1700000100]],
  );

  const ttft = "vllm:time_to_first_token_seconds";
  assert.deepEqual(
    find(e, `${ttft}_bucket`).map((x) => x.value),
    [1, 3, 6, ...Array(19).fill(6), 6],
  );
  assert.equal(val(e, `${ttft}_count`), 6);
  const ttftSum = val(e, `${ttft}_sum`);
  assert.ok(ttftSum > 0 && ttftSum <= 0.001 + 2 * 0.005 + 3 * 0.01, `plausible sum ${ttftSum}`);
  assert.equal(val(e, "vllm:e2e_request_latency_seconds_bucket", { le: "0.3" }), 0);
  assert.equal(val(e, "vllm:e2e_request_latency_seconds_bucket", { le: "0.5" }), 4);
  assert.equal(val(e, "vllm:e2e_request_latency_seconds_count"), 4);
  // Index 19 is the +Inf bucket of P (19 bounds).
  assert.equal(val(e, "vllm:time_per_output_token_seconds_bucket", { le: "80" }), 0);
  assert.equal(val(e, "vllm:time_per_output_token_seconds_bucket", { le: "+Inf" }), 5);
  assert.equal(val(e, "vllm:request_prompt_tokens_bucket", { le: "2" }), 0);
  assert.equal(val(e, "vllm:request_prompt_tokens_bucket", { le: "5" }), 10);
  assert.equal(val(e, "vllm:request_prompt_tokens_count"), 10);
  assert.deepEqual(
    find(e, "vllm:request_success_total").map((x) => [x.labels.finish_reason, x.value]),
    [["stop", 20], ["length", 5]],
  );
  assert.equal(val(e, "vllm:prompt_tokens_total"), 1000);
  assert.equal(val(e, "vllm:generation_tokens_total"), 300);
  assert.equal(val(e, "vllm:prefix_cache_hits_total"), 50);
  assert.equal(val(e, "vllm:prefix_cache_queries_total"), 200);
  // Unset histograms are present and empty, not filled with real observations.
  assert.equal(val(e, "vllm:inter_token_latency_seconds_count"), 0);
  assert.equal(val(e, "vllm:request_generation_tokens_count"), 0);
  assert.equal(val(e, "vllm:request_queue_time_seconds_count"), 0);
});

/** Polls one gauge for `ms`, returning the values seen in order. */
async function series(s: TestServer, name: string, ms: number): Promise<number[]> {
  const out: number[] = [];
  const until = performance.now() + ms;
  while (performance.now() < until) {
    out.push(val(await scrape(s.url), name));
    await sleep(25);
  }
  return out;
}

Deno.test("fake metric functions over time: ramp, squarewave, oscillate, rampreset", async () => {
  const [a, b] = await Promise.all([
    startSim(fakeArgs({
      // Periods long enough that a loaded machine still samples each phase.
      "running-requests": "ramp:0:20:1500ms",
      "waiting-requests": "squarewave:2:8:400ms",
      "kv-cache-usage": "oscillate:0.2:0.8:400ms",
    })),
    startSim(fakeArgs({ "running-requests": "rampreset:0:20:800ms" })),
  ]);
  try {
    const [ramp, square, osc, reset] = await Promise.all([
      series(a, "vllm:num_requests_running", 2000),
      series(a, "vllm:num_requests_waiting", 2000),
      series(a, "vllm:kv_cache_usage_perc", 2000),
      series(b, "vllm:num_requests_running", 2000),
    ]);
    // ramp: non-decreasing from near 0 up to 20, then stays there.
    for (let i = 1; i < ramp.length; i++) assert.ok(ramp[i] >= ramp[i - 1], `ramp ${ramp}`);
    assert.ok(ramp[0] < 15, `ramp starts low: ${ramp}`);
    assert.equal(ramp.at(-1), 20, `ramp ends at 20: ${ramp}`);
    assert.ok(new Set(ramp).size >= 3, `ramp passes through values: ${ramp}`);
    // squarewave: only the two levels, and it flips.
    assert.ok(square.every((v) => v === 2 || v === 8), `square ${square}`);
    assert.ok(square.includes(2) && square.includes(8), `square flips: ${square}`);
    // oscillate: bounded by [start, end] and varying.
    assert.ok(osc.every((v) => v >= 0.2 - 1e-9 && v <= 0.8 + 1e-9), `osc ${osc}`);
    assert.ok(new Set(osc).size >= 4, `osc varies: ${osc}`);
    assert.ok(Math.max(...osc) - Math.min(...osc) > 0.3, `osc swings: ${osc}`);
    // rampreset: climbs, then falls back near the start at least once.
    const drops = reset.filter((v, i) => i > 0 && v < reset[i - 1] - 5);
    assert.ok(drops.length >= 1, `rampreset resets: ${reset}`);
    assert.ok(reset.every((v) => v >= 0 && v <= 20), `rampreset bounded: ${reset}`);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

Deno.test("POST /fake_metrics: partial update, clearing, errors, turning off", async () => {
  await using s = await startSim(fakeArgs({
    "running-requests": 3,
    loras: [{ running: "x", waiting: "", timestamp: 1 }],
    "request-success-total": { stop: 4 },
  }));
  let res = await s.post("/fake_metrics", { "waiting-requests": 9, "running-requests": null });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  let e = await scrape(s.url);
  assert.equal(val(e, "vllm:num_requests_running"), 3, "null leaves a field unchanged");
  assert.equal(val(e, "vllm:num_requests_waiting"), 9);
  assert.equal(find(e, "vllm:lora_requests_info").length, 1);
  assert.equal(val(e, "vllm:request_success_total", { finish_reason: "stop" }), 4);

  res = await s.post("/fake_metrics", { loras: [], "request-success-total": {} });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  e = await scrape(s.url);
  assert.equal(find(e, "vllm:lora_requests_info").length, 0, "[] clears");
  assert.equal(find(e, "vllm:request_success_total").length, 0, "{} clears");
  assert.equal(val(e, "vllm:num_requests_waiting"), 9);

  for (const bad of [{ "running-requests": "sometimes" }, { nope: 1 }, [1, 2]]) {
    res = await s.post("/fake_metrics", bad);
    assert.equal(res.status, 400, JSON.stringify(bad));
    const body = await res.json();
    assert.equal(body.error.code, 400);
    assert.equal(body.error.type, "BadRequestError");
    assert.equal(typeof body.error.message, "string");
  }
  res = await s.post("/fake_metrics", "{not json");
  assert.equal(res.status, 400);
  await res.body?.cancel();
  e = await scrape(s.url);
  assert.equal(val(e, "vllm:num_requests_running"), 3, "a refused update changes nothing");

  // {} turns fake metrics off: real values come back.
  res = await s.post("/fake_metrics", {});
  assert.equal(res.status, 200);
  await res.body?.cancel();
  e = await scrape(s.url);
  assert.equal(val(e, "vllm:num_requests_running"), 0);
  assert.equal(val(e, "vllm:request_success_total", { finish_reason: "length" }), 0);
});
