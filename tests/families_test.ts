/**
 * The OpenAI and vLLM families over the one pipeline: golden bytes of chat,
 * completions, generate and embeddings; stop, response_format and vLLM's
 * sampling 400s through the official client; embeddings as prefill-only
 * engine requests; generate's checks; CORS; per-rank engine ids.
 */
import assert from "node:assert/strict";
import { Ajv } from "ajv";
import OpenAI from "openai";
import { startSim } from "./helpers.ts";

const FIXED = { "x-request-id": "fixed" };
/** `created` is the clock's; everything else is fixed by the seed and the request id. */
const unclock = (s: string) => s.replaceAll(/"created":\d+/g, '"created":0');

Deno.test("golden: chat stream and JSON bytes", async () => {
  await using s = await startSim(["--model", "m", "--seed", "7"]);
  const req = {
    model: "m",
    messages: [{ role: "user", content: "Hi" }],
    max_tokens: 3,
    ignore_eos: true,
  };
  const head = `data: {"id":"chatcmpl-fixed","object":"chat.completion.chunk","created":0,` +
    `"model":"m","choices":[`;
  const tok = (delta: string, finish: string) =>
    `${head}{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${finish}}],` +
    `"usage":null}\n\n`;
  // "### user: Hi\n" is 6 tokens: "#", "#", "# ", "user", ": ", "Hi\n".
  const usage = `{"prompt_tokens":6,"total_tokens":9,"completion_tokens":3,` +
    `"prompt_tokens_details":{"cached_tokens":0}}`;
  const stream = await s.post(
    "/v1/chat/completions",
    { ...req, stream: true, stream_options: { include_usage: true } },
    FIXED,
  );
  assert.equal(stream.headers.get("content-type"), "text/event-stream; charset=utf-8");
  assert.equal(
    unclock(await stream.text()),
    tok(`{"role":"assistant","content":""}`, "null") + tok(`{"content":"A "}`, "null") +
      tok(`{"content":"warm "}`, "null") + tok(`{"content":"scarf "}`, `"length"`) +
      `${head}],"usage":${usage}}\n\ndata: [DONE]\n\n`,
  );
  const res = await s.post("/v1/chat/completions", req, FIXED);
  assert.equal(
    unclock(await res.text()),
    `{"id":"chatcmpl-fixed","object":"chat.completion","created":0,"model":"m","choices":[` +
      `{"index":0,"message":{"role":"assistant","content":"The bus driver ",` +
      `"tool_calls":[]},"logprobs":null,"finish_reason":"length","stop_reason":null}],` +
      `"usage":${usage},"prompt_logprobs":null,"kv_transfer_params":null}`,
  );
});

Deno.test("golden: completions JSON with n = 2", async () => {
  await using s = await startSim(["--model", "m", "--seed", "7"]);
  const res = await s.post(
    "/v1/completions",
    { model: "m", prompt: "Hi", max_tokens: 3, ignore_eos: true, n: 2 },
    FIXED,
  );
  const choice = (i: number, text: string) =>
    `{"index":${i},"text":"${text}","logprobs":null,"finish_reason":"length",` +
    `"stop_reason":null,"prompt_logprobs":null}`;
  assert.equal(
    unclock(await res.text()),
    `{"id":"cmpl-fixed","object":"text_completion","created":0,"model":"m","choices":[` +
      `${choice(0, "A warm scarf ")},${choice(1, "Rain drummed on ")}],` +
      `"usage":{"prompt_tokens":1,"total_tokens":7,"completion_tokens":6,` +
      `"prompt_tokens_details":{"cached_tokens":0}},"kv_transfer_params":null}`,
  );
});

Deno.test("golden: generate stream and JSON bytes", async () => {
  await using s = await startSim(["--model", "m", "--seed", "7"]);
  const req = { token_ids: [1, 2, 3], sampling_params: { max_tokens: 2 }, ignore_eos: true };
  const res = await s.post("/inference/v1/generate", req, FIXED);
  assert.equal(
    await res.text(),
    `{"choices":[{"index":0,"finish_reason":"length","token_ids":[2329261444,3039737800]}],` +
      `"request_id":"fixed","ec_transfer_params":null}`,
  );
  const stream = await s.post(
    "/inference/v1/generate",
    { ...req, stream: true, stream_options: { include_usage: true } },
    FIXED,
  );
  const frame = (finish: string, id: number) =>
    `data: {"request_id":"fixed","choices":[{"index":0,"finish_reason":${finish},` +
    `"token_ids":[${id}]}]}\n\n`;
  assert.equal(
    await stream.text(),
    frame("null", 793698452) + frame(`"length"`, 3053186203) +
      `data: {"request_id":"fixed","choices":[],"usage":{"prompt_tokens":3,"total_tokens":5,` +
      `"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":0}}}\n\n` +
      "data: [DONE]\n\n",
  );
});

Deno.test("golden: embeddings bytes (the reference's vector formula)", async () => {
  await using s = await startSim(["--model", "m"]);
  const res = await s.post("/v1/embeddings", { input: "Hello, world", dimensions: 5 });
  assert.equal(
    await res.text(),
    `{"object":"list","data":[{"object":"embedding","index":0,"embedding":` +
      `[-0.353515625,-0.529296875,-0.712890625,-0.4140625,0.8828125]}],"model":"m",` +
      `"usage":{"prompt_tokens":3,"total_tokens":3}}`,
  );
});

Deno.test("embeddings: official client, every input form, base64, dimensions, 400s", async () => {
  await using s = await startSim(["--served-model-name", "emb", "other"]);
  // The client asks for base64 and decodes it: the same floats as the JSON form.
  const r = await s.client.embeddings.create({ model: "other", input: ["a b", "c"] });
  assert.equal(r.model, "other");
  assert.deepEqual(r.data.map((d) => d.index), [0, 1]);
  assert.equal(r.data[0].embedding.length, 384);
  const plain = await (await s.post("/v1/embeddings", { model: "other", input: ["a b", "c"] }))
    .json();
  assert.deepEqual(r.data[0].embedding, plain.data[0].embedding);
  assert.equal(r.usage.prompt_tokens, plain.usage.prompt_tokens);
  // Token-id inputs: the formula is visible directly; negative ids count as 0.
  const ids = await (await s.post("/v1/embeddings", { input: [1025, -4], dimensions: 3 })).json();
  assert.equal(ids.model, "emb"); // no model: the first served name
  assert.deepEqual(ids.data[0].embedding, [2 / 1024 - 1, -1, 2 / 256 - 1]);
  const nested = await (await s.post("/v1/embeddings", { input: [[512], [0, 1]], dimensions: 2 }))
    .json();
  const vectors = nested.data.map((d: { embedding: number[] }) => d.embedding);
  assert.deepEqual(vectors, [[0, -1], [-1, 2 / 1024 - 1]]);
  const bad: [unknown, string][] = [
    [{ input: [] }, "input is required and must be a non-empty string or array"],
    [{ input: ["a", 1] }, "input is required and must be a non-empty string or array"],
    [{ input: {} }, "input is required and must be a non-empty string or array"],
    [{ input: ["a", ""] }, "input cannot be an empty string"],
    [{ input: "a", dimensions: 0 }, "dimensions must be at least 1"],
    [{ input: "a", dimensions: 65537 }, "dimensions must be at most 65536"],
    [
      { input: Array(128).fill("a"), dimensions: 65536 },
      "This request asks for 128 vectors of 65536 dimensions; at most 4194304 elements per request.",
    ],
    [
      { input: Array(1025).fill("a") },
      "Too many inputs: 1025; at most 1024 per request (--max-sequences-per-request).",
    ],
  ];
  for (const [body, message] of bad) {
    const res = await s.post("/v1/embeddings", body);
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.equal((await res.json()).error.message, message);
  }
  const unknown = await s.post("/v1/embeddings", { model: "nope", input: "a" });
  assert.equal(unknown.status, 404);
  const forced = await s.post("/v1/embeddings", { input: "a" }, { "x-return-error": "429" });
  assert.equal(forced.status, 429);
});

Deno.test("embeddings: a prefill-only engine request (prefill time, metrics)", async () => {
  await using s = await startSim(["--time-to-first-token", "300ms"]);
  const t0 = performance.now();
  const res = await s.post("/v1/embeddings", { input: ["x y", "z"] });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  // Never early; how late depends on the machine.
  assert.ok(performance.now() - t0 >= 295, `answered after ${performance.now() - t0} ms`);
  const m = await (await fetch(s.url + "/metrics")).text();
  // Two inputs, two requests, both ending with "stop"; no output tokens.
  assert.match(m, /vllm:request_success_total\{[^}]*finish_reason="stop"[^}]*\} 2/);
  assert.match(m, /vllm:generation_tokens_total\{[^}]*\} 0/);
  assert.match(m, /vllm:time_to_first_token_seconds_count\{[^}]*\} 2/);
});

Deno.test("generate: the reference's checks, in its words", async () => {
  await using s = await startSim();
  const cases: [unknown, string][] = [
    [{ sampling_params: {} }, "Missing input token_ids"],
    [{ token_ids: [1] }, "Missing sampling_params field"],
    [
      { token_ids: [1], sampling_params: { max_tokens: 0 } },
      "Max completion tokens and max tokens should be positive",
    ],
    [
      { token_ids: [1], sampling_params: {}, ignore_eos: true },
      "Ignore_eos is true but max_completion_tokens (or max_tokens) is not set",
    ],
    [
      {
        token_ids: [1],
        sampling_params: { extra_args: { kv_transfer_params: { do_remote_decode: true } } },
        stream: true,
      },
      "Prefill does not support streaming",
    ],
    [{ token_ids: [1, -2], sampling_params: {} }, "'token_ids' must be an array of token ids."],
    [{ token_ids: [], sampling_params: {} }, "The decoder prompt cannot be empty"],
  ];
  for (const [body, message] of cases) {
    const res = await s.post("/inference/v1/generate", body);
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.equal((await res.json()).error.message, message);
  }
  const unknown = await s.post("/inference/v1/generate", {
    model: "nope",
    token_ids: [1],
    sampling_params: {},
  });
  assert.equal(unknown.status, 404);
  const ok = await (await s.post("/inference/v1/generate", {
    model: "test-model",
    token_ids: [5, 6],
    sampling_params: { max_tokens: 4 },
  })).json();
  assert.equal(ok.choices[0].index, 0);
  assert.ok(ok.choices[0].token_ids.length >= 1 && ok.choices[0].token_ids.length <= 4);
  assert.equal(ok.ec_transfer_params, null);
  assert.equal("usage" in ok, false);
});

Deno.test("stop: strings and token ids cut the answer; streamed pieces add up to it", async () => {
  await using s = await startSim(["--seed", "3"]);
  const base = {
    model: "test-model",
    messages: [{ role: "user" as const, content: "hi" }],
    max_tokens: 200,
    ignore_eos: true,
    seed: 11,
  };
  const full = (await s.client.chat.completions.create(base)).choices[0].message.content!;
  // A stop string taken from the middle of the answer.
  const words = full.split(" ");
  const stop = ` ${words[3]} ${words[4]}`;
  const cutAt = full.indexOf(stop);
  assert.ok(cutAt > 0);
  const r = await s.client.chat.completions.create({ ...base, stop: [stop, "never-seen"] });
  const c = r.choices[0] as typeof r.choices[0] & { stop_reason: string | null };
  assert.equal(c.message.content, full.slice(0, cutAt));
  assert.equal(c.finish_reason, "stop");
  assert.equal(c.stop_reason, stop);
  assert.ok(r.usage!.completion_tokens < 200);
  // include_stop_str_in_output keeps the stop string.
  const inc = await s.client.chat.completions.create({
    ...base,
    stop,
    include_stop_str_in_output: true,
  } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
  assert.equal(inc.choices[0].message.content, full.slice(0, cutAt + stop.length));
  assert.equal(inc.usage!.completion_tokens, r.usage!.completion_tokens);
  // The stream sends the same text and ends with the same reason.
  const stream = await s.client.chat.completions.create({ ...base, stop, stream: true });
  let text = "";
  let finish: string | null = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(text, full.slice(0, cutAt));
  assert.equal(finish, "stop");
  // A stop token id: the answer ends with that token, whose text is left out (vLLM).
  const tok = await (await s.post("/tokenize", { prompt: full })).json();
  const id = tok.tokens[5];
  const byId = await s.post("/v1/completions", {
    model: "test-model",
    prompt: "x",
    max_tokens: 200,
    ignore_eos: true,
    seed: 11,
    stop_token_ids: [id],
  });
  const body = await byId.json();
  assert.equal(body.choices[0].stop_reason, id);
  const k = body.usage.completion_tokens;
  assert.ok(k <= 6);
  const before = await (await s.post("/detokenize", { tokens: tok.tokens.slice(0, k - 1) })).json();
  assert.equal(body.choices[0].text, before.prompt);
  for (const bad of [{ stop: [""] }, { stop: 5 }, { stop_token_ids: ["a"] }]) {
    const res = await s.post("/v1/completions", { model: "test-model", prompt: "x", ...bad });
    assert.equal(res.status, 400, JSON.stringify(bad));
  }
});

Deno.test("response_format: JSON that parses, and validates against the schema", async () => {
  await using s = await startSim(["--seed", "5"]);
  const ajv = new Ajv({ strict: false });
  const schema = {
    type: "object",
    properties: {
      city: { type: "string", enum: ["Paris", "Rome"] },
      days: { type: "integer", minimum: 2, maximum: 9 },
      tags: { type: "array", items: { type: "string", maxLength: 12 }, minItems: 1 },
      rating: { type: "number", exclusiveMinimum: 0, maximum: 5 },
    },
    required: ["city", "days", "tags", "rating"],
    additionalProperties: false,
  };
  const validate = ajv.compile(schema);
  for (let i = 0; i < 10; i++) {
    const r = await s.client.chat.completions.create({
      model: "test-model",
      messages: [{ role: "user", content: "plan a trip" }],
      response_format: { type: "json_schema", json_schema: { name: "trip", schema } },
    });
    const value = JSON.parse(r.choices[0].message.content!);
    assert.ok(validate(value), JSON.stringify(validate.errors));
    assert.equal(r.choices[0].finish_reason, "stop");
  }
  const obj = await s.client.chat.completions.create({
    model: "test-model",
    messages: [{ role: "user", content: "x" }],
    response_format: { type: "json_object" },
  });
  assert.equal(typeof JSON.parse(obj.choices[0].message.content!), "object");
  // Cut at max_tokens like any answer.
  const cut = await s.client.chat.completions.create({
    model: "test-model",
    messages: [{ role: "user", content: "x" }],
    response_format: { type: "json_object" },
    max_tokens: 2,
  });
  assert.equal(cut.choices[0].finish_reason, "length");
  assert.equal(cut.usage!.completion_tokens, 2);
  await assert.rejects(
    s.client.chat.completions.create({
      model: "test-model",
      messages: [{ role: "user", content: "x" }],
      response_format: {
        type: "json_schema",
        json_schema: { name: "no", schema: { type: "array", minItems: 3, maxItems: 1 } },
      },
    }),
    OpenAI.BadRequestError,
  );
  const badType = await s.post("/v1/chat/completions", {
    model: "test-model",
    messages: [{ role: "user", content: "x" }],
    response_format: { type: "yaml" },
  });
  assert.equal(badType.status, 400);
});

Deno.test("sampling values out of vLLM's ranges are 400s in its words", async () => {
  await using s = await startSim();
  const cases: [Record<string, unknown>, string][] = [
    [{ temperature: -0.5 }, "temperature must be non-negative, got -0.5."],
    [{ top_p: 0 }, "top_p must be in (0, 1], got 0."],
    [{ top_p: 1.5 }, "top_p must be in (0, 1], got 1.5."],
    [{ top_k: -3 }, "top_k must be 0 (disable), or at least 1, got -3."],
    [{ min_p: 2 }, "min_p must be in [0, 1], got 2."],
    [{ presence_penalty: 3 }, "presence_penalty must be in [-2, 2], got 3."],
    [{ frequency_penalty: -2.5 }, "frequency_penalty must be in [-2, 2], got -2.5."],
    [{ repetition_penalty: 0 }, "repetition_penalty must be greater than zero, got 0."],
    [{ n: 0 }, "n must be at least 1, got 0."],
    [{ max_tokens: 0 }, "max_tokens must be at least 1, got 0."],
  ];
  for (const [extra, message] of cases) {
    const err = await s.client.chat.completions.create({
      model: "test-model",
      messages: [{ role: "user", content: "x" }],
      ...extra,
    } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming).then(
      () => null,
      (e) => e,
    );
    assert.ok(err instanceof OpenAI.BadRequestError, JSON.stringify(extra));
    assert.equal(err.message, `400 ${message}`);
  }
  // In range: accepted (values are not used, no model runs).
  const ok = await s.client.chat.completions.create({
    model: "test-model",
    messages: [{ role: "user", content: "x" }],
    temperature: 0,
    top_p: 1,
    presence_penalty: -2,
    max_tokens: 2,
  });
  assert.equal(ok.object, "chat.completion");
});

Deno.test("CORS: vLLM's defaults, preflight, and a restricted policy", async () => {
  {
    await using s = await startSim(["--api-key", "k"]);
    const pre = await fetch(s.url + "/v1/chat/completions", {
      method: "OPTIONS",
      headers: {
        origin: "http://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type",
      },
    });
    // Answered before auth, as vLLM's middleware does.
    assert.equal(pre.status, 200);
    assert.equal(await pre.text(), "OK");
    assert.equal(pre.headers.get("access-control-allow-origin"), "*");
    assert.equal(
      pre.headers.get("access-control-allow-methods"),
      "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT",
    );
    assert.equal(pre.headers.get("access-control-allow-headers"), "authorization,content-type");
    assert.equal(pre.headers.get("access-control-max-age"), "600");
    const simple = await fetch(s.url + "/v1/models", {
      headers: { origin: "http://app.example", authorization: "Bearer k" },
    });
    await simple.body?.cancel();
    assert.equal(simple.headers.get("access-control-allow-origin"), "*");
    const none = await fetch(s.url + "/health");
    await none.body?.cancel();
    assert.equal(none.headers.get("access-control-allow-origin"), null);
  }
  {
    await using s = await startSim([
      "--allowed-origins",
      '["http://ok.example"]',
      "--allowed-methods",
      "GET",
      "POST",
      "--allowed-headers",
      "authorization",
      "--allow-credentials",
    ]);
    const preflight = (origin: string, method: string, headers?: string) =>
      fetch(s.url + "/v1/models", {
        method: "OPTIONS",
        headers: {
          origin,
          "access-control-request-method": method,
          ...(headers ? { "access-control-request-headers": headers } : {}),
        },
      });
    const ok = await preflight("http://ok.example", "POST", "Authorization, Content-Type");
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
    assert.equal(ok.headers.get("access-control-allow-origin"), "http://ok.example");
    assert.equal(ok.headers.get("access-control-allow-credentials"), "true");
    assert.equal(ok.headers.get("vary"), "Origin");
    const bad = await preflight("http://evil.example", "DELETE", "x-custom");
    assert.equal(bad.status, 400);
    assert.equal(await bad.text(), "Disallowed CORS origin, method, headers");
    const simple = await fetch(s.url + "/v1/models", { headers: { origin: "http://ok.example" } });
    await simple.body?.cancel();
    assert.equal(simple.headers.get("access-control-allow-origin"), "http://ok.example");
    const other = await fetch(s.url + "/v1/models", { headers: { origin: "http://x.example" } });
    await other.body?.cancel();
    assert.equal(other.headers.get("access-control-allow-origin"), null);
  }
});

Deno.test("data-parallel ranks get distinct engine ids without --seed", async () => {
  await using s = await startSim(["--data-parallel-size", "3"]);
  const ids = s.running.ranks.map((r) => r.sim.engineId);
  assert.equal(new Set(ids).size, 3);
  // The start-time seed is past 2^53, where seed + rank used to collapse.
  assert.ok(s.running.ranks[0].sim.config.seed > 2 ** 53);
});

/** One valid request per generation family, and whether it answers in Anthropic's shape. */
const FAMILIES: [string, unknown, boolean][] = [
  [
    "/v1/chat/completions",
    { model: "test-model", messages: [{ role: "user", content: "x" }] },
    false,
  ],
  ["/v1/completions", { model: "test-model", prompt: "x" }, false],
  ["/v1/responses", { model: "test-model", input: "x" }, false],
  [
    "/v1/messages",
    { model: "test-model", max_tokens: 5, messages: [{ role: "user", content: "x" }] },
    true,
  ],
  ["/inference/v1/generate", { token_ids: [1, 2], sampling_params: { max_tokens: 3 } }, false],
  ["/v1/embeddings", { input: "x" }, false],
];

function assertErrorShape(body: Record<string, unknown>, status: number, anthropic: boolean) {
  if (anthropic) {
    assert.equal(body.type, "error");
    const e = body.error as Record<string, unknown>;
    assert.equal(typeof e.type, "string");
    assert.equal(typeof e.message, "string");
  } else {
    const e = body.error as Record<string, unknown>;
    assert.equal(e.code, status);
    assert.equal(typeof e.message, "string");
  }
}

Deno.test("every generation family: failure injection and X-Return-Error in its own shape", async () => {
  {
    await using s = await startSim([
      "--failure-injection-rate",
      "100",
      "--failure-types",
      "rate_limit",
    ]);
    for (const [path, body, anthropic] of FAMILIES) {
      const res = await s.post(path, body);
      assert.equal(res.status, 429, path);
      const json = await res.json();
      assertErrorShape(json, 429, anthropic);
      if (anthropic) assert.equal(json.error.type, "rate_limit_error");
    }
  }
  await using s = await startSim();
  for (const [path, body, anthropic] of FAMILIES) {
    const ok = await s.post(path, body);
    assert.equal(ok.status, 200, path);
    await ok.body?.cancel();
    const res = await s.post(path, body, { "x-return-error": "503" });
    assert.equal(res.status, 503, path);
    const json = await res.json();
    assertErrorShape(json, 503, anthropic);
    if (anthropic) assert.equal(json.error.type, "overloaded_error");
  }
});

Deno.test("cache_threshold answers: no role chunk, an empty delta, null cache details", async () => {
  await using s = await startSim();
  const req = { model: "test-model", messages: [{ role: "user", content: "x" }] };
  const header = { "x-cache-threshold-finish-reason": "true" };
  const body = await (await s.post("/v1/chat/completions", req, header)).json();
  assert.equal(body.choices[0].finish_reason, "cache_threshold");
  assert.equal(body.usage.completion_tokens, 0);
  assert.equal(body.usage.prompt_tokens_details, null);
  const stream = await s.post(
    "/v1/chat/completions",
    { ...req, stream: true, stream_options: { include_usage: true } },
    header,
  );
  const frames = (await stream.text()).split("\n\n").filter((f) => f !== "");
  assert.equal(frames.length, 3);
  const first = JSON.parse(frames[0].slice(6));
  assert.deepEqual(first.choices[0].delta, {});
  assert.equal(first.choices[0].finish_reason, "cache_threshold");
  assert.equal(JSON.parse(frames[1].slice(6)).usage.prompt_tokens_details, null);
  assert.equal(frames[2], "data: [DONE]");
});

Deno.test("response_format answers stay inside the context window and the output budget", async () => {
  await using s = await startSim(["--max-model-len", "300"]);
  const long = {
    type: "json_schema",
    json_schema: { name: "long", schema: { type: "string", minLength: 20_000 } },
  };
  const r = await (await s.post("/v1/chat/completions", {
    model: "test-model",
    messages: [{ role: "user", content: "x" }],
    response_format: long,
  })).json();
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.total_tokens, 300);
  // Without max_tokens a JSON answer reserves the whole window per sequence.
  const over = await s.post("/v1/chat/completions", {
    model: "test-model",
    messages: [{ role: "user", content: "x" }],
    response_format: long,
    n: 1000,
  });
  assert.equal(over.status, 400);
  assert.match((await over.json()).error.message, /--max-output-tokens-per-request/);
});
