/**
 * Control plane: failure injection, X-Return-Error, /admin/config, sleep mode
 * and the --api-key rule, driven through the official openai SDK and raw fetch.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import type { Config } from "../lib/config.ts";
import { ApiError } from "../lib/errors.ts";
import { HeldRequests } from "../lib/failures.ts";
import { startSim, type TestServer, waitFor } from "./helpers.ts";

const CHAT = {
  model: "test-model",
  messages: [{ role: "user" as const, content: "hello" }],
  max_tokens: 3,
};

/** Runs `fn`, which must throw; returns what it threw. */
async function rejection(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  assert.fail("expected the call to fail");
}

type SdkError = InstanceType<typeof OpenAI.APIError>;

async function apiError(fn: () => Promise<unknown>): Promise<SdkError> {
  const e = await rejection(fn);
  assert.ok(e instanceof OpenAI.APIError, `expected an APIError, got ${String(e)}`);
  return e;
}

interface ErrorJson {
  error: { message: string; type: string; param: string | null; code: number };
}

async function errorJson(res: Response, status: number): Promise<ErrorJson["error"]> {
  assert.equal(res.status, status);
  const body = await res.json() as ErrorJson;
  assert.equal(body.error.code, status);
  return body.error;
}

const getConfig = async (s: TestServer) =>
  await (await fetch(`${s.url}/admin/config`)).json() as Record<string, unknown>;

// ---------- failure injection ----------

const FAILURES: {
  type: string;
  cls: abstract new (...args: never[]) => SdkError;
  status: number;
  message: string;
  param: string | null;
}[] = [
  {
    type: "rate_limit",
    cls: OpenAI.RateLimitError,
    status: 429,
    // The reference simulator names --model (here test-model), not the requested alias.
    message: "Rate limit reached for test-model in organization org-xxx on requests per min " +
      "(RPM): Limit 3, Used 3, Requested 1.",
    param: null,
  },
  {
    type: "invalid_api_key",
    cls: OpenAI.AuthenticationError,
    status: 401,
    message: "Incorrect API key provided.",
    param: null,
  },
  {
    type: "context_length",
    cls: OpenAI.BadRequestError,
    status: 400,
    message: "This model's maximum context length is 4096 tokens. However, your messages " +
      "resulted in 4500 tokens.",
    param: "messages",
  },
  {
    type: "server_error",
    cls: OpenAI.InternalServerError, // the SDK maps every status ≥ 500 to this class
    status: 503,
    message: "The server is overloaded or not ready yet.",
    param: null,
  },
  {
    type: "invalid_request",
    cls: OpenAI.BadRequestError,
    status: 400,
    message: "Invalid request: missing required parameter 'model'.",
    param: "model",
  },
  {
    type: "model_not_found",
    cls: OpenAI.NotFoundError,
    status: 404,
    message: "The model 'test-model-nonexistent' does not exist",
    param: "model",
  },
];

for (const f of FAILURES) {
  Deno.test(`failure injection: ${f.type} through the openai SDK`, async () => {
    // a slow TTFT proves the failure answers at once, before any latency
    await using s = await startSim([
      "--served-model-name",
      "alias-model",
      "--failure-injection-rate",
      "100",
      "--failure-types",
      f.type,
      "--time-to-first-token",
      "3s",
    ]);
    const t0 = performance.now();
    const e = await apiError(() =>
      s.client.chat.completions.create({ ...CHAT, model: "alias-model" })
    );
    assert.ok(performance.now() - t0 < 1500, "failures fire without latency");
    assert.ok(e instanceof f.cls, `${f.type}: got ${e.constructor.name}`);
    assert.equal(e.status, f.status);
    assert.equal(e.param, f.param);
    assert.equal((e.error as ErrorJson["error"]).message, f.message);
    assert.equal(e.message, `${f.status} ${f.message}`);

    // completions, streaming too: the error comes before the stream starts
    const c = await apiError(() =>
      s.client.completions.create({ model: "alias-model", prompt: "hi", stream: true })
    );
    assert.ok(c instanceof f.cls);
    assert.equal(c.status, f.status);
    assert.equal((c.error as ErrorJson["error"]).message, f.message);
  });
}

Deno.test("failure injection: mixed types at rate 100 only produce configured ones", async () => {
  await using s = await startSim([
    "--seed",
    "11",
    "--failure-injection-rate",
    "100",
    "--failure-types",
    "rate_limit",
    "model_not_found",
  ]);
  const statuses = new Set<number>();
  for (let i = 0; i < 30; i++) {
    statuses.add((await apiError(() => s.client.chat.completions.create(CHAT))).status ?? 0);
  }
  assert.deepEqual([...statuses].sort(), [404, 429]);
});

Deno.test("failure injection: empty failure-types draws every answering type", async () => {
  await using s = await startSim(["--seed", "5", "--failure-injection-rate", "100"]);
  const statuses = new Set<number>();
  for (let i = 0; i < 80; i++) {
    statuses.add(
      (await apiError(() =>
        s.client.completions.create({
          model: "test-model",
          prompt: "x",
          max_tokens: 1,
        })
      )).status ?? 0,
    );
  }
  // never `timeout` (it would hang): that one has to be listed explicitly
  assert.deepEqual([...statuses].sort(), [400, 401, 404, 429, 503]);
});

Deno.test("failure injection: rate 0 never fails", async () => {
  await using s = await startSim([
    "--failure-injection-rate",
    "0",
    "--failure-types",
    "rate_limit",
  ]);
  for (let i = 0; i < 25; i++) {
    const r = await s.client.chat.completions.create(CHAT);
    assert.equal(r.object, "chat.completion");
  }
});

Deno.test("failure injection: a partial rate is reproducible with --seed", async () => {
  const outcomes = async () => {
    await using s = await startSim(["--seed", "42", "--failure-injection-rate", "50"]);
    const out: number[] = [];
    for (let i = 0; i < 40; i++) {
      const res = await s.post("/v1/completions", {
        model: "test-model",
        prompt: "p",
        max_tokens: 2,
      });
      out.push(res.status);
      await res.body?.cancel();
    }
    return out;
  };
  const a = await outcomes();
  const ok = a.filter((x) => x === 200).length;
  assert.ok(ok > 5 && ok < 35, `about half succeed, got ${ok}/40`);
  assert.deepEqual(await outcomes(), a);
});

Deno.test("failure injection: timeout holds until the client gives up, then frees all", async () => {
  await using s = await startSim(["--failure-injection-rate", "100", "--failure-types", "timeout"]);
  const sim = s.running.ranks[0].sim;
  // the SDK's own per-request timeout fires: the server never answered
  const t0 = performance.now();
  const e = await rejection(() => s.client.chat.completions.create(CHAT, { timeout: 300 }));
  assert.ok(e instanceof OpenAI.APIConnectionTimeoutError, `got ${String(e)}`);
  const waited = performance.now() - t0;
  assert.ok(waited >= 250 && waited < 5000, `gave up after ${waited}ms`);
  // The SDK's abandoned request is released too (routes/disconnect.ts notices
  // what Deno does not report for requests of this size).
  await waitFor(() => sim.held.size === 0);
  // Raw fetch with an AbortSignal, streaming and not: the hold ends as soon
  // as the server sees the client leave.
  const base = sim.held.size;
  for (const stream of [false, true]) {
    const ac = new AbortController();
    const pending = fetch(`${s.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "test-model", prompt: "x", stream }),
      signal: ac.signal,
    });
    await waitFor(() => sim.held.size === base + 1);
    ac.abort();
    await assert.rejects(pending);
    await waitFor(() => sim.held.size === base);
  }
  // nothing ever reached the engine, nothing is left behind
  assert.equal(sim.engine.runningCount, 0);
  assert.equal(sim.engine.waitingCount, 0);
  assert.equal(sim.engine.timers.size, 0);
  // a later request works once injection is switched off
  const res = await s.post("/admin/config", { "failure-injection-rate": 0 });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  const r = await s.client.chat.completions.create(CHAT);
  assert.equal(r.object, "chat.completion");
});

Deno.test("failure injection: shutdown releases held requests at once", async () => {
  const s = await startSim(["--failure-injection-rate", "100", "--failure-types", "timeout"]);
  const sim = s.running.ranks[0].sim;
  const pending = s.client.chat.completions.create(CHAT).catch((e: unknown) => e);
  await waitFor(() => sim.held.size === 1);
  const t0 = performance.now();
  await s.close();
  assert.ok(performance.now() - t0 < 2000, "the drain does not wait for the hold's bound");
  const e = await pending;
  assert.ok(e instanceof OpenAI.InternalServerError, `got ${String(e)}`);
  assert.equal(e.status, 503);
  assert.equal(sim.held.size, 0);
});

Deno.test("failure injection: a hold ends on its bound, on abort and on release", async () => {
  const held = new HeldRequests();
  const e = await rejection(() => held.hold(new AbortController().signal, 30));
  assert.ok(e instanceof ApiError);
  assert.equal(e.status, 408);
  assert.equal(held.size, 0);

  const ac = new AbortController();
  const p = held.hold(ac.signal, 60_000);
  assert.equal(held.size, 1);
  ac.abort();
  await assert.rejects(p);
  assert.equal(held.size, 0);

  const q = held.hold(new AbortController().signal, 60_000);
  held.releaseAll();
  const r = await rejection(() => q);
  assert.ok(r instanceof ApiError && r.status === 503);
  // once released (shutting down), new holds answer at once
  const later = await rejection(() => held.hold(new AbortController().signal, 60_000));
  assert.ok(later instanceof ApiError && later.status === 503);
  assert.equal(held.size, 0);
});

// ---------- X-Return-Error ----------

Deno.test("X-Return-Error: answers at once with that status and type", async () => {
  await using s = await startSim(["--time-to-first-token", "3s"]);
  const cases: [string, number, string][] = [
    ["429", 429, "RateLimitError"],
    ["503", 503, "ServiceUnavailableError"],
    ["404", 404, "NotFoundError"],
    [" 500 ", 500, "InternalServerError"],
  ];
  for (const path of ["/v1/chat/completions", "/v1/completions"]) {
    const body = path === "/v1/completions" ? { model: "test-model", prompt: "x" } : CHAT;
    for (const [header, status, type] of cases) {
      const t0 = performance.now();
      const err = await errorJson(await s.post(path, body, { "X-Return-Error": header }), status);
      assert.equal(err.type, type);
      assert.ok(performance.now() - t0 < 1500);
    }
    for (const bad of ["abc", "4.5", "200", "99999", ""]) {
      const err = await errorJson(await s.post(path, body, { "X-Return-Error": bad }), 400);
      assert.equal(err.type, "BadRequestError");
      assert.match(err.message, /X-Return-Error/);
    }
  }
  const e = await apiError(() =>
    s.client.chat.completions.create(CHAT, { headers: { "X-Return-Error": "429" } })
  );
  assert.ok(e instanceof OpenAI.RateLimitError);
});

// ---------- /admin/config ----------

Deno.test("admin config: GET has flag names as keys and durations as strings", async () => {
  await using s = await startSim(["--time-to-first-token", "250ms", "--api-key", "k"]);
  const cfg = await (await fetch(`${s.url}/admin/config`, {
    headers: { authorization: "Bearer k" }, // the control plane needs the key
  })).json() as Record<string, unknown>;
  assert.equal(cfg["time-to-first-token"], "250ms");
  assert.equal(cfg["inter-token-latency"], "0s");
  assert.equal(cfg["failure-injection-rate"], 0);
  assert.deepEqual(cfg["failure-types"], []);
  assert.equal(cfg["model"], "test-model");
  assert.equal(cfg["max-num-seqs"], 5);
  assert.equal(cfg["api-key"], "<redacted>");
  assert.ok(Object.keys(cfg).every((k) => /^[a-z][a-z0-9_-]*$/.test(k))); // klog flags use _
});

Deno.test("admin config: POST updates apply to later requests", async () => {
  await using s = await startSim();
  let res = await s.post("/admin/config", {
    "failure-injection-rate": 100,
    "failure-types": ["rate_limit"],
  });
  assert.equal(res.status, 200);
  const after = await res.json() as Record<string, unknown>;
  assert.equal(after["failure-injection-rate"], 100);
  assert.deepEqual(after["failure-types"], ["rate_limit"]);
  assert.ok(
    (await apiError(() => s.client.chat.completions.create(CHAT))) instanceof
      OpenAI.RateLimitError,
  );

  res = await s.post("/admin/config", {
    "failure-injection-rate": 0,
    "time-to-first-token": "300ms",
    "time-to-first-token-std-dev": "0s",
  });
  assert.equal(res.status, 200);
  assert.equal((await res.json() as Record<string, unknown>)["time-to-first-token"], "300ms");
  const t0 = performance.now();
  await s.client.chat.completions.create({ ...CHAT, max_tokens: 1 });
  assert.ok(performance.now() - t0 >= 250, "the new time-to-first-token applies");
  assert.deepEqual(await getConfig(s), await (await fetch(`${s.url}/admin/config`)).json());
});

Deno.test("admin config: bad updates answer 400 and change nothing", async () => {
  await using s = await startSim([
    "--time-to-first-token",
    "100ms",
    "--time-to-first-token-std-dev",
    "30ms",
  ]);
  const before = await getConfig(s);
  const bad: unknown[] = [
    { "unknown-key": 1 },
    { model: "other" }, // exists, but not updatable at run time
    { "failure-injection-rate": 101 },
    { "failure-injection-rate": "lots" },
    { "failure-types": ["nope"] },
    { "time-to-first-token": "-5ms" },
    { "time-to-first-token": "soon" },
    { "time-to-first-token-std-dev": "50ms" }, // > 30% of 100ms
    { "time-to-first-token": "50ms" }, // the kept 30ms std-dev would exceed 30%
    { "inter-token-latency": "10ms", "inter-token-latency-std-dev": "4ms" },
    { "failure-injection-rate": 50, "bogus": true }, // one bad key spoils the whole patch
    { "failure-injection-rate": null },
    [1, 2],
    "text",
  ];
  for (const patch of bad) {
    const res = await s.post("/admin/config", patch);
    const err = await errorJson(res, 400);
    assert.equal(err.type, "BadRequestError", JSON.stringify(patch));
  }
  const malformed = await s.post("/admin/config", "{not json");
  await errorJson(malformed, 400);
  const named = await errorJson(
    await s.post("/admin/config", { "time-to-first-token-std-dev": "50ms" }),
    400,
  );
  assert.equal(named.param, "time-to-first-token-std-dev");
  assert.match(named.message, /30%/);
  assert.deepEqual(await getConfig(s), before);
});

Deno.test("admin config: updates are atomic for requests in flight", async () => {
  await using s = await startSim(["--max-num-seqs", "8"]);
  const sim = s.running.ranks[0].sim;
  const A = { "time-to-first-token": "20ms", "time-to-first-token-std-dev": "6ms" };
  const B = { "time-to-first-token": "2ms", "time-to-first-token-std-dev": "0.6ms" };
  const installed = new Set<Config>([sim.config]);
  const seen: Config[] = [];
  sim.engine.observers.push({ started: (job) => seen.push(job.spec.cfg) });

  let flipping = true;
  const flipper = (async () => {
    for (let i = 0; flipping; i++) {
      const res = await s.post("/admin/config", i % 2 === 0 ? A : B);
      assert.equal(res.status, 200);
      await res.body?.cancel();
      installed.add(sim.config);
    }
  })();
  const requests = Array.from(
    { length: 60 },
    (_, i) =>
      i % 2 === 0
        ? s.client.chat.completions.create({ ...CHAT, max_tokens: 2 })
        : s.client.completions.create({ model: "test-model", prompt: "p", max_tokens: 2 }),
  );
  await Promise.all(requests);
  flipping = false;
  await flipper;

  assert.equal(seen.length, 60);
  const pairs = new Set<string>();
  for (const cfg of seen) {
    assert.ok(installed.has(cfg), "every request runs on a whole installed snapshot");
    pairs.add(`${cfg["time-to-first-token"]}/${cfg["time-to-first-token-std-dev"]}`);
  }
  for (const p of pairs) assert.ok(["0/0", "20/6", "2/0.6"].includes(p), `mixed combination ${p}`);
  assert.ok(installed.size > 2, "the config flipped while requests ran");
});

// ---------- sleep mode ----------

Deno.test("sleep: ignored without VLLM_SERVER_DEV_MODE=1 or without --enable-sleep-mode", async () => {
  const setups: [string[], Record<string, string>][] = [
    [["--enable-sleep-mode"], {}],
    [["--enable-sleep-mode"], { VLLM_SERVER_DEV_MODE: "0" }],
    [[], { VLLM_SERVER_DEV_MODE: "1" }],
  ];
  for (const [args, env] of setups) {
    await using s = await startSim(args, env);
    const res = await s.post("/sleep", "");
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const st = await (await fetch(`${s.url}/is_sleeping`)).json();
    assert.deepEqual(st, { is_sleeping: false });
    const r = await s.client.chat.completions.create(CHAT);
    assert.equal(r.object, "chat.completion");
    assert.equal((await fetch(`${s.url}/ready`)).status, 200);
  }
});

Deno.test("sleep: with both gates, sleep → 503 and not ready; wake_up → normal", async () => {
  await using s = await startSim(["--enable-sleep-mode"], { VLLM_SERVER_DEV_MODE: "1" });
  const sim = s.running.ranks[0].sim;
  const hookCalls: string[] = [];
  sim.sleepHooks.push({
    sleep: () => hookCalls.push("sleep"),
    wake: (tags) => hookCalls.push(`wake:${tags.join("+")}`),
  });
  const isSleeping = async () =>
    (await (await fetch(`${s.url}/is_sleeping`)).json() as { is_sleeping: boolean }).is_sleeping;
  const status = async (path: string) => {
    const res = await fetch(s.url + path);
    await res.body?.cancel();
    return res.status;
  };

  for (const wakePath of ["/wake_up", "/wake_up?tags=kv_cache", "/wake_up?tags=weights"]) {
    assert.equal(await isSleeping(), false);
    let res = await s.post("/sleep?level=1", "");
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.equal(await isSleeping(), true);

    const e = await apiError(() => s.client.chat.completions.create(CHAT));
    assert.ok(e instanceof OpenAI.InternalServerError);
    assert.equal(e.status, 503);
    assert.equal(e.type, "ServiceUnavailableError");
    const c = await s.post("/v1/completions", { model: "test-model", prompt: "x" });
    assert.equal((await errorJson(c, 503)).type, "ServiceUnavailableError");
    assert.equal(await status("/ready"), 503);
    assert.equal(await status("/health/ready"), 503);
    assert.equal(await status("/health"), 200);

    res = await s.post(wakePath, "");
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.equal(await isSleeping(), false);
    assert.equal(await status("/ready"), 200);
    const r = await s.client.chat.completions.create(CHAT);
    assert.equal(r.object, "chat.completion");
  }
  assert.deepEqual(hookCalls, [
    "sleep",
    "wake:",
    "sleep",
    "wake:kv_cache",
    "sleep",
    "wake:weights",
  ]);
});

// ---------- --api-key ----------

Deno.test("api key: /v1 and the control plane need the bearer key, health stays open", async () => {
  await using s = await startSim(["--api-key", "secret-key"]);
  // the helper's client sends the wrong key
  const wrong = await apiError(() => s.client.chat.completions.create(CHAT));
  assert.ok(wrong instanceof OpenAI.AuthenticationError);
  assert.equal(wrong.status, 401);
  assert.ok((await apiError(() => s.client.models.list())) instanceof OpenAI.AuthenticationError);

  const good = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "secret-key", maxRetries: 0 });
  assert.equal((await good.chat.completions.create(CHAT)).object, "chat.completion");
  assert.equal((await good.models.list()).data[0].id, "test-model");

  const none = await errorJson(
    await s.post("/v1/completions", { model: "test-model", prompt: "x" }),
    401,
  );
  assert.equal(none.type, "AuthenticationError");
  assert.equal(none.message, "Unauthorized");
  const raw = await s.post("/v1/completions", { model: "test-model", prompt: "x" }, {
    Authorization: "secret-key", // no Bearer
  });
  await errorJson(raw, 401);
  // 401 before 404 for unknown /v1 paths, like vLLM
  await errorJson(await fetch(`${s.url}/v1/nope`), 401);
  await errorJson(
    await fetch(`${s.url}/v1/nope`, { headers: { Authorization: "Bearer secret-key" } }),
    404,
  );

  for (
    const path of [
      "/health",
      "/ready",
      "/health/ready",
      "/version",
      "/is_sleeping",
    ]
  ) {
    const res = await fetch(s.url + path);
    assert.equal(res.status, 200, path);
    await res.body?.cancel();
  }
  // /metrics stays open, as in vLLM (--metrics-require-api-key closes it).
  const metrics = await fetch(`${s.url}/metrics`);
  assert.equal(metrics.status, 200);
  await metrics.body?.cancel();
  // Every state-changing or config-revealing endpoint needs the key.
  const bearer = { authorization: "Bearer secret-key" };
  for (
    const [method, path, body] of [
      ["GET", "/admin/config", undefined],
      ["POST", "/admin/config", "{}"],
      ["POST", "/fake_metrics", '{"running-requests":1}'],
      ["POST", "/sleep", ""],
      ["POST", "/wake_up", ""],
      ["POST", "/v1/load_lora_adapter", '{"lora_name":"a","lora_path":"/p"}'],
    ] as const
  ) {
    const denied = await fetch(s.url + path, { method, body });
    assert.equal(denied.status, 401, `${method} ${path} without the key`);
    assert.equal((await denied.json()).error.type, "AuthenticationError");
    const allowed = await fetch(s.url + path, { method, body, headers: bearer });
    assert.notEqual(allowed.status, 401, `${method} ${path} with the key`);
    await allowed.body?.cancel();
  }
  // The call made with the key took effect.
  assert.equal(s.running.ranks[0].sim.config["fake-metrics"]?.["running-requests"], 1);
});

Deno.test("api key: --metrics-require-api-key protects /metrics", async () => {
  await using s = await startSim(["--api-key", "k", "--metrics-require-api-key"]);
  const res = await fetch(`${s.url}/metrics`);
  assert.equal(res.status, 401);
  await res.body?.cancel();
  const ok = await fetch(`${s.url}/metrics`, { headers: { authorization: "Bearer k" } });
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
});

Deno.test("api key: without --api-key nothing is required", async () => {
  await using s = await startSim();
  const res = await s.post("/v1/completions", { model: "test-model", prompt: "x", max_tokens: 1 });
  assert.equal(res.status, 200);
  await res.body?.cancel();
});

Deno.test("failure injection fires on arrival, before the body is read", async () => {
  await using s = await startSim([
    "--failure-injection-rate",
    "100",
    "--failure-types",
    "rate_limit",
  ]);
  const res = await s.post("/v1/chat/completions", "{not json at all");
  assert.equal(res.status, 429);
  const body = await res.json();
  assert.equal(body.error.type, "RateLimitError");
  assert.match(body.error.message, /^Rate limit reached for test-model /);
});
