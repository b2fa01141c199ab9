import assert from "node:assert/strict";
import {
  applyAdminUpdate,
  ConfigError,
  configToJSON,
  HelpRequested,
  helpText,
  loadConfig,
} from "../lib/config.ts";
import { formatDuration, parseDuration } from "../lib/duration.ts";
import { ADMIN_KEYS, OPTION_LIST, VALUE_OPTIONS } from "../lib/options.ts";

const load = (argv: string[], env: Record<string, string> = {}) => loadConfig(argv, env);
const cfgOf = (...argv: string[]) => load(["--model", "m", ...argv]).config;

/** Asserts a ConfigError whose option is `option` and whose message names it. */
function assertConfigError(fn: () => unknown, option: string, pattern?: RegExp) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    assert.equal(e.option, option);
    assert.ok(e.message.includes(option), `message "${e.message}" should name ${option}`);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

async function yamlFile(text: string): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".yaml" });
  await Deno.writeTextFile(path, text);
  return path;
}

Deno.test("duration: units, combos, bare numbers, errors", () => {
  assert.equal(parseDuration("100ms"), 100);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("750us"), 0.75);
  assert.equal(parseDuration("750µs"), 0.75);
  assert.equal(parseDuration("2m"), 120_000);
  assert.equal(parseDuration("1h"), 3_600_000);
  assert.equal(parseDuration("10ns"), 0.00001);
  assert.equal(parseDuration("1m30s"), 90_000);
  assert.equal(parseDuration("250"), 250);
  assert.equal(parseDuration("2.5"), 2.5);
  assert.equal(parseDuration(40), 40);
  assert.equal(parseDuration("0"), 0);
  for (const bad of ["", "-5ms", "abc", "5 ms", "5x", "ms", "1.5.5s"]) {
    assert.throws(() => parseDuration(bad), `"${bad}" should be rejected`);
  }
  assert.throws(() => parseDuration(-1));
});

Deno.test("duration: canonical formatting round-trips", () => {
  assert.equal(formatDuration(0), "0s");
  assert.equal(formatDuration(250), "250ms");
  assert.equal(formatDuration(1500), "1.5s");
  assert.equal(formatDuration(0.75), "750us");
  assert.equal(formatDuration(0.00001), "10ns");
  assert.equal(formatDuration(90_000), "1m30s");
  assert.equal(formatDuration(3_600_000), "1h0m0s");
  assert.equal(formatDuration(1.5), "1.5ms");
  for (const ms of [0, 0.75, 1.5, 250, 1500, 90_000, 3_723_500]) {
    assert.equal(parseDuration(formatDuration(ms)), ms);
  }
});

Deno.test("defaults and resolved values", () => {
  const { config: c, seedGiven, warnings } = load(["--model", "org/model"]);
  assert.equal(c.port, 8000);
  assert.equal(c.host, "0.0.0.0");
  assert.equal(c["max-num-seqs"], 5);
  assert.equal(c["max-model-len"], 1024);
  assert.equal(c.mode, "random");
  assert.deepEqual(c["served-model-name"], ["org/model"]);
  assert.equal(c["max-cpu-loras"], 1);
  assert.equal(c["max-num-batched-tokens"], undefined);
  assert.equal(c["metrics-port"], undefined);
  assert.equal(c["fake-metrics"], null);
  assert.equal(c["fake-metrics-refresh-interval"], 100);
  assert.equal(c["render-timeout"], 30_000);
  assert.equal(c["time-factor-under-load"], 1);
  assert.equal(c["latency-calculator"], "");
  assert.equal(c["log-level"], "info");
  assert.equal(seedGiven, false);
  assert.ok(Number.isInteger(c.seed) && c.seed > 1e18, "seed defaults to now in ns");
  assert.deepEqual(warnings, []);
  const given = load(["--model", "m", "--seed", "42", "--max-loras", "3"]);
  assert.equal(given.seedGiven, true);
  assert.equal(given.config.seed, 42);
  assert.equal(given.config["max-cpu-loras"], 3);
});

Deno.test("flag syntax: =, single dash, -v, positional model", () => {
  assert.equal(cfgOf("--port=9000").port, 9000);
  assert.equal(cfgOf("-port", "9001").port, 9001);
  assert.equal(cfgOf("-v", "4").v, 4);
  assert.equal(cfgOf("-v=5").v, 5);
  assert.equal(cfgOf("--v", "2").v, 2);
  assert.equal(load(["serve", "org/m", "--port", "1"]).config.model, "org/m");
  assert.equal(load(["org/m"]).config.model, "org/m");
  assertConfigError(() => load(["a", "b"]), "model", /unexpected argument/);
  assert.equal(cfgOf("--min-tool-call-integer-param", "-5")["min-tool-call-integer-param"], -5);
});

Deno.test("booleans: bare, explicit value, =false, --no-", () => {
  assert.equal(cfgOf("--enable-kvcache")["enable-kvcache"], true);
  assert.equal(cfgOf("--enable-kvcache", "true")["enable-kvcache"], true);
  assert.equal(cfgOf("--enable-kvcache", "false")["enable-kvcache"], false);
  assert.equal(cfgOf("--enable-kvcache=false")["enable-kvcache"], false);
  assert.equal(cfgOf("--omni", "--no-omni").omni, false);
  assert.equal(cfgOf("--no-enable-sleep-mode")["enable-sleep-mode"], false);
  // the next arg is only consumed when it is literally true/false
  const c = load(["--enable-kvcache", "org/m"]).config;
  assert.equal(c["enable-kvcache"], true);
  assert.equal(c.model, "org/m");
  assertConfigError(() => cfgOf("--omni=maybe"), "omni", /true or false/);
});

Deno.test("lists: multi-value, repeated, JSON entries", () => {
  const c = cfgOf("--served-model-name", "a", "b", "c", "--port", "1234");
  assert.deepEqual(c["served-model-name"], ["a", "b", "c"]);
  assert.equal(c.port, 1234);
  assert.deepEqual(
    cfgOf("--served-model-name", "a", "--served-model-name", "b")["served-model-name"],
    ["a", "b"],
  );
  assert.deepEqual(
    cfgOf("--failure-types", "rate_limit", "server_error")["failure-types"],
    ["rate_limit", "server_error"],
  );
  assert.deepEqual(cfgOf("--failure-types=timeout,rate_limit")["failure-types"], [
    "timeout",
    "rate_limit",
  ]);
  const l = cfgOf(
    "--lora-modules",
    '{"name":"a","path":"/p"}',
    '{"name":"b","base_model_name":"m"}',
  );
  assert.deepEqual(l["lora-modules"], [{ name: "a", path: "/p" }, {
    name: "b",
    base_model_name: "m",
  }]);
  assert.equal(l["max-cpu-loras"], 1);
});

Deno.test("precedence: CLI > env > YAML > default", async () => {
  const path = await yamlFile(
    "port: 7000\nmodel: yaml-model\nhash-seed: yaml-seed\nmax-num-seqs: 9\nmode: echo\n",
  );
  const env = { SIM_MODEL: "env-model", PYTHONHASHSEED: "123" };
  const a = load(["--config", path], env);
  assert.equal(a.configFile, path);
  assert.equal(a.config.port, 7000); // YAML over default
  assert.equal(a.config.model, "env-model"); // env over YAML
  assert.equal(a.config["hash-seed"], "123");
  assert.equal(a.config.mode, "echo");
  assert.equal(a.config["max-waiting-queue-length"], 1000); // default
  const b = load(["--config", path, "--model", "cli", "--port", "7001", "--hash-seed", "x"], env);
  assert.equal(b.config.model, "cli");
  assert.equal(b.config.port, 7001);
  assert.equal(b.config["hash-seed"], "x");
  assert.equal(b.config["max-num-seqs"], 9);
  assert.equal(load(["--config", path], {}).config.model, "yaml-model");
  assert.equal(load([], { SIM_MODEL: "only-env" }).config.model, "only-env");
  await Deno.remove(path);
});

Deno.test("YAML: typed values, lists, lora objects, fake-metrics map and JSON string", async () => {
  const path = await yamlFile(`
model: m
served-model-name: [a, b]
time-to-first-token: 1.5s
inter-token-latency: 20
failure-types:
  - rate_limit
  - timeout
lora-modules:
  - name: l1
    path: /x
  - '{"name":"l2"}'
fake-metrics:
  running-requests: 3
  kv-cache-usage: "oscillate:0:1:10s"
  request-success-total: { stop: 4 }
enable-kvcache: true
`);
  const c = load(["--config", path]).config;
  assert.deepEqual(c["served-model-name"], ["a", "b"]);
  assert.equal(c["time-to-first-token"], 1500);
  assert.equal(c["inter-token-latency"], 20);
  assert.deepEqual(c["failure-types"], ["rate_limit", "timeout"]);
  assert.deepEqual(c["lora-modules"], [{ name: "l1", path: "/x" }, { name: "l2" }]);
  assert.deepEqual(c["fake-metrics"], {
    "running-requests": 3,
    "kv-cache-usage": "oscillate:0:1:10s",
    "request-success-total": { stop: 4 },
  });
  assert.equal(c["enable-kvcache"], true);
  // CLI list replaces the YAML list instead of appending to it
  assert.deepEqual(
    load(["--config", path, "--served-model-name", "z"]).config["served-model-name"],
    ["z"],
  );
  const p2 = await yamlFile(`model: m\nfake-metrics: '{"waiting-requests": 7}'\n`);
  assert.deepEqual(load(["--config", p2]).config["fake-metrics"], { "waiting-requests": 7 });
  const p3 = await yamlFile("model: m\nno-such-option: 1\n");
  assertConfigError(() => load(["--config", p3]), "no-such-option", /unknown option/);
  const p4 = await yamlFile("model: m\nport: abc\n");
  assertConfigError(() => load(["--config", p4]), "port", /integer/);
  assertConfigError(() => load(["--config", "/nonexistent/x.yaml"]), "config");
  for (const p of [path, p2, p3, p4]) await Deno.remove(p);
});

Deno.test("seed 004: nested YAML, flags and env", async () => {
  const path = await yamlFile(`
server:
  port: 8100
  metricsPort: 9090
simulation:
  ttft: { mean: 50, stddev: 10 }
  itl: { mean: 10, stddev: 2 }
  queue: { maxDepth: 100, processingRate: 50 }
  tokens: { minLength: 10, maxLength: 500 }
model:
  name: "llama-70b-simulated"
  maxContextLength: 8192
errorInjection:
  enabled: true
  rate: 0.05
  types: [timeout, serverError, rateLimited]
`);
  const { config: c, warnings } = load(["--config", path]);
  assert.equal(c.port, 8100);
  assert.equal(c["metrics-port"], 9090);
  assert.equal(c["time-to-first-token"], 50);
  assert.equal(c["time-to-first-token-std-dev"], 10);
  assert.equal(c["inter-token-latency"], 10);
  assert.equal(c["inter-token-latency-std-dev"], 2);
  assert.equal(c["max-waiting-queue-length"], 100);
  assert.equal(c.model, "llama-70b-simulated");
  assert.equal(c["max-model-len"], 8192);
  assert.equal(c["failure-injection-rate"], 5);
  assert.deepEqual(c["failure-types"], ["timeout", "server_error", "rate_limit"]);
  assert.ok(warnings.some((w) => w.includes("processingRate")));
  assert.ok(warnings.some((w) => w.includes("minLength")));

  const f = load(["--config", path, "--ttft-mean", "100", "--itl-mean", "20", "--queue-depth", "7"])
    .config;
  assert.equal(f["time-to-first-token"], 100);
  assert.equal(f["inter-token-latency"], 20);
  assert.equal(f["max-waiting-queue-length"], 7);
  const e = load(["--model", "m"], { TTFT_MEAN: "80", ITL_MEAN: "15" }).config;
  assert.equal(e["time-to-first-token"], 80);
  assert.equal(e["inter-token-latency"], 15);
  assert.equal(cfgOf("--metrics-port", "9091")["metrics-port"], 9091);
  const off = await yamlFile("model: {name: x}\nerrorInjection: {enabled: false, rate: 0.5}\n");
  assert.equal(load(["--config", off]).config["failure-injection-rate"], 0);
  await Deno.remove(path);
  await Deno.remove(off);
});

Deno.test("errors name the option", () => {
  assertConfigError(() => cfgOf("--no-such-flag"), "no-such-flag", /unknown flag/);
  assertConfigError(() => cfgOf("--port", "abc"), "port", /integer/);
  assertConfigError(() => cfgOf("--port", "70000"), "port", /65535/);
  assertConfigError(() => cfgOf("--port"), "port", /needs a value/);
  assertConfigError(() => cfgOf("--mode", "loud"), "mode", /echo/);
  assertConfigError(() => cfgOf("--latency-calculator", "x"), "latency-calculator");
  assertConfigError(() => cfgOf("--time-to-first-token", "-5ms"), "time-to-first-token");
  assertConfigError(() => cfgOf("--inter-token-latency", "fast"), "inter-token-latency");
  assertConfigError(
    () => cfgOf("--time-to-first-token", "100", "--time-to-first-token-std-dev", "31"),
    "time-to-first-token-std-dev",
    /30%/,
  );
  assert.equal(
    cfgOf("--time-to-first-token", "100", "--time-to-first-token-std-dev", "30")[
      "time-to-first-token-std-dev"
    ],
    30,
  );
  assertConfigError(
    () => cfgOf("--kv-cache-transfer-latency-std-dev", "1ms"),
    "kv-cache-transfer-latency-std-dev",
  );
  // no 30% rule for the per-token std-devs
  assert.equal(cfgOf("--prefill-time-std-dev", "5ms")["prefill-time-std-dev"], 5);
  assertConfigError(
    () => cfgOf("--max-loras", "3", "--max-cpu-loras", "2"),
    "max-cpu-loras",
    /max-loras/,
  );
  assertConfigError(() => load([]), "model", /required/);
  assertConfigError(() => cfgOf("--block-size", "20"), "block-size");
  assert.throws(
    () => cfgOf("--block-size", "20"),
    /token block size should be one of the following: 8, 16, 32, 64, 128/,
  );
  assertConfigError(() => cfgOf("--time-factor-under-load", "0.5"), "time-factor-under-load");
  assertConfigError(() => cfgOf("--max-num-seqs", "0"), "max-num-seqs");
  assertConfigError(() => cfgOf("--max-request-body-size-mb", "513"), "max-request-body-size-mb");
  assertConfigError(() => cfgOf("--zmq-max-connect-attempts", "11"), "zmq-max-connect-attempts");
  assertConfigError(
    () => cfgOf("--global-cache-hit-threshold", "1.5"),
    "global-cache-hit-threshold",
  );
  assertConfigError(() => cfgOf("--failure-injection-rate", "101"), "failure-injection-rate");
  assertConfigError(() => cfgOf("--failure-types", "oops"), "failure-types", /oops/);
  assertConfigError(
    () => cfgOf("--port", "65530", "--data-parallel-size", "7"),
    "port",
    /past port 65535/,
  );
  assertConfigError(
    () => cfgOf("--min-tool-call-integer-param", "10", "--max-tool-call-integer-param", "5"),
    "min-tool-call-integer-param",
  );
  assertConfigError(() => cfgOf("--ssl-certfile", "c.pem"), "ssl-keyfile", /together/);
  assertConfigError(() => cfgOf("--lora-modules", "{bad"), "lora-modules", /JSON/);
  assertConfigError(() => cfgOf("--lora-modules", '{"path":"x"}'), "lora-modules", /name/);
  assertConfigError(
    () => cfgOf("--lora-modules", '{"name":"a","base_model_name":"other"}'),
    "lora-modules",
    /base_model_name/,
  );
  assertConfigError(() => cfgOf("--fake-metrics", "{bad"), "fake-metrics", /JSON/);
  assertConfigError(
    () => cfgOf("--fake-metrics", '{"running-requests":"wobble:1:2:3s"}'),
    "fake-metrics",
    /oscillate/,
  );
  assertConfigError(
    () => cfgOf("--fake-metrics", '{"running-requests":"ramp:1:2:soon"}'),
    "fake-metrics",
  );
  assertConfigError(() => cfgOf("--omni", "--image-emission-rate", "200"), "image-emission-rate");
});

Deno.test("help flag and help text", () => {
  assert.throws(() => load(["--help"]), HelpRequested);
  assert.throws(() => load(["-h"]), HelpRequested);
  const text = helpText();
  for (const o of OPTION_LIST) assert.ok(text.includes(`${o.name} <`), `help lacks ${o.name}`);
  assert.ok(text.includes("SIM_MODEL"));
  assert.ok(text.includes("--[no-]enable-sleep-mode"));
  assert.ok(text.includes("(default: 8000)"));
});

Deno.test("legacy, ignored and klog flags", () => {
  const r = load([
    "--model",
    "m",
    "--lora",
    "a,b",
    "--max-running-requests",
    "7",
    "--tensor-parallel-size",
    "2",
    "--no-enable-prefix-caching",
    "--enforce-eager",
    "--mm-processor-kwargs",
    "{}",
    "--ec-transfer-config",
    "x",
    "--logtostderr",
    "--log-dir",
    "/tmp",
    "--log_file",
    "f",
    "--skip-headers=true",
    "--vmodule",
    "x=2",
  ]);
  assert.deepEqual(r.config["lora-modules"], [{ name: "a" }, { name: "b" }]);
  assert.equal(r.config["max-num-seqs"], 7);
  assert.ok(r.warnings.some((w) => /--lora .*deprecated.*lora-modules/.test(w)));
  assert.ok(r.warnings.some((w) => /max-running-requests .*deprecated.*max-num-seqs/.test(w)));
  for (const n of ["tensor-parallel-size", "enforce-eager", "log_dir", "log_file", "vmodule"]) {
    assert.ok(r.warnings.some((w) => w.includes(n)), `no warning for ${n}`);
  }
});

Deno.test("configToJSON: flag names as keys, durations formatted", () => {
  const c = cfgOf("--time-to-first-token", "250ms", "--api-key", "secret");
  const j = configToJSON(c);
  assert.deepEqual(Object.keys(j).sort(), VALUE_OPTIONS.map((o) => o.name).sort());
  assert.equal(j["time-to-first-token"], "250ms");
  assert.equal(j["fake-metrics-refresh-interval"], "100ms");
  assert.equal(j.port, 8000);
  assert.equal(j["metrics-port"], null);
  assert.notEqual(j["api-key"], "secret");
  assert.ok(!("lora" in j) && !("ttft-mean" in j), "aliases are not config keys");
  JSON.stringify(j);
});

Deno.test("applyAdminUpdate: accepts admin keys, returns a new config", () => {
  const c = cfgOf(
    "--fake-metrics",
    '{"running-requests":1,"loras":[{"running":"a","timestamp":1}]}',
  );
  const before = structuredClone(c);
  const n = applyAdminUpdate(c, {
    "failure-injection-rate": 50,
    "failure-types": ["rate_limit"],
    "time-to-first-token": "250ms",
    "inter-token-latency": 15,
    "latency-calculator": "per-token",
    "image-emission-rate": 10,
    "fake-metrics": { "waiting-requests": 4, loras: [], "running-requests": null },
  });
  assert.notEqual(n, c);
  assert.deepEqual(c, before, "original untouched");
  assert.equal(n["failure-injection-rate"], 50);
  assert.deepEqual(n["failure-types"], ["rate_limit"]);
  assert.equal(n["time-to-first-token"], 250);
  assert.equal(n["inter-token-latency"], 15);
  assert.equal(n["latency-calculator"], "per-token");
  assert.deepEqual(n["fake-metrics"], { "running-requests": 1, "waiting-requests": 4 });
  assert.equal(applyAdminUpdate(n, { "fake-metrics": null })["fake-metrics"], null);
  assert.equal(applyAdminUpdate(n, { "fake-metrics": {} })["fake-metrics"], null);
  assert.deepEqual(
    applyAdminUpdate(cfgOf(), { "fake-metrics": '{"kv-cache-usage":0.5}' })["fake-metrics"],
    { "kv-cache-usage": 0.5 },
  );
  assert.ok(ADMIN_KEYS.includes("time-to-generate-image-std-dev"));
  assert.ok(!ADMIN_KEYS.includes("port"));
});

Deno.test("applyAdminUpdate: rejects atomically", () => {
  const c = cfgOf("--time-to-first-token", "100ms");
  const before = structuredClone(c);
  const rejects: [unknown, string][] = [
    [{ port: 1 }, "port"],
    [{ "failure-injection-rate": 10, "max-num-seqs": 2 }, "max-num-seqs"],
    [{ "failure-injection-rate": 10, "failure-types": ["nope"] }, "failure-types"],
    [{ "failure-injection-rate": 500 }, "failure-injection-rate"],
    [{ "time-to-first-token": "-1s" }, "time-to-first-token"],
    [{ "time-to-first-token-std-dev": "50ms" }, "time-to-first-token-std-dev"],
    [{ "fake-metrics": { "running-requests": "bad" } }, "fake-metrics"],
    [{ "fake-metrics": { unknown: 1 } }, "fake-metrics"],
  ];
  for (const [patch, option] of rejects) {
    assertConfigError(() => applyAdminUpdate(c, patch), option);
    assert.deepEqual(c, before);
  }
  assert.throws(() => applyAdminUpdate(c, [1]), ConfigError);
  // cross-field rule after the patch: lowering the mean under an existing std-dev fails
  const s = cfgOf("--time-to-first-token", "100ms", "--time-to-first-token-std-dev", "30ms");
  assertConfigError(
    () => applyAdminUpdate(s, { "time-to-first-token": "10ms" }),
    "time-to-first-token-std-dev",
  );
  assert.equal(s["time-to-first-token"], 100);
});
