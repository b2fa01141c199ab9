/** Raw HTTP: SSE framing, bad inputs, 404/405/413, headers, readiness. */
import assert from "node:assert/strict";
import { sleep, sseEvents, startSim } from "./helpers.ts";

const chat = (extra: Record<string, unknown> = {}) => ({
  model: "test-model",
  messages: [{ role: "user", content: "hi" }],
  ...extra,
});

Deno.test("SSE framing: data frames, role first, one token per chunk, [DONE] last", async () => {
  await using s = await startSim();
  const res = await s.post(
    "/v1/chat/completions",
    chat({ stream: true, max_tokens: 4, ignore_eos: true, n: 2 }),
  );
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
  const events = await sseEvents(res);
  assert.equal(events.at(-1), "[DONE]");
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  for (const idx of [0, 1]) {
    const mine = chunks.filter((c) => c.choices[0].index === idx);
    assert.deepEqual(mine[0].choices[0].delta, { role: "assistant", content: "" });
    const tokens = mine.slice(1);
    assert.equal(tokens.length, 4);
    assert.ok(tokens.every((c) => typeof c.choices[0].delta.content === "string"));
    assert.equal(tokens.at(-1).choices[0].finish_reason, "length");
    assert.ok(tokens.slice(0, -1).every((c) => c.choices[0].finish_reason === null));
    assert.ok(chunks.every((c) => !("usage" in c)), "no usage key without include_usage");
  }
});

Deno.test("SSE: include_usage puts usage:null on chunks and a final usage chunk", async () => {
  await using s = await startSim();
  const res = await s.post(
    "/v1/completions",
    {
      model: "test-model",
      prompt: "x y z",
      max_tokens: 3,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true },
    },
  );
  const events = await sseEvents(res);
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.deepEqual(last.usage, {
    prompt_tokens: 3,
    total_tokens: 6,
    completion_tokens: 3,
    prompt_tokens_details: { cached_tokens: 0 },
  });
  assert.ok(chunks.slice(0, -1).every((c) => c.usage === null));
});

Deno.test("SSE: continuous_usage_stats counts tokens so far", async () => {
  await using s = await startSim();
  const res = await s.post(
    "/v1/completions",
    {
      model: "test-model",
      prompt: "x",
      max_tokens: 3,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true, continuous_usage_stats: true },
    },
  );
  const chunks = (await sseEvents(res)).slice(0, -2).map((e) => JSON.parse(e));
  assert.deepEqual(chunks.map((c) => c.usage.completion_tokens), [1, 2, 3]);
});

Deno.test("bad inputs answer 400 in the error shape, never 500", async () => {
  await using s = await startSim();
  const cases: [string, unknown][] = [
    ["/v1/chat/completions", "{not json"],
    ["/v1/chat/completions", "[]"],
    ["/v1/chat/completions", { messages: [{ role: "user", content: "x" }] }],
    ["/v1/chat/completions", { model: "test-model" }],
    ["/v1/chat/completions", { model: "test-model", messages: [] }],
    ["/v1/chat/completions", { model: "test-model", messages: "hi" }],
    ["/v1/chat/completions", { model: "test-model", messages: [{ content: "no role" }] }],
    ["/v1/chat/completions", { model: "test-model", messages: [{ role: "user", content: 5 }] }],
    ["/v1/chat/completions", {
      model: "test-model",
      messages: [{ role: "user", content: [{ type: "text" }] }],
    }],
    ["/v1/chat/completions", chat({ max_tokens: -1 })],
    ["/v1/chat/completions", chat({ max_tokens: 1.5 })],
    ["/v1/chat/completions", chat({ max_tokens: "10" })],
    ["/v1/chat/completions", chat({ max_completion_tokens: 0 })],
    ["/v1/chat/completions", chat({ n: 0 })],
    ["/v1/chat/completions", chat({ n: 1_000_000 })],
    ["/v1/chat/completions", chat({ stream: "yes" })],
    ["/v1/chat/completions", chat({ stream_options: { include_usage: true } })],
    ["/v1/chat/completions", { model: 42, messages: [] }],
    ["/v1/completions", { model: "test-model" }],
    ["/v1/completions", { model: "test-model", prompt: "" }],
    ["/v1/completions", { model: "test-model", prompt: [] }],
    ["/v1/completions", { model: "test-model", prompt: ["ok", ""] }],
    ["/v1/completions", { model: "test-model", prompt: [[1, 2], []] }],
    ["/v1/completions", { model: "test-model", prompt: [1, -2] }],
    ["/v1/completions", { model: "test-model", prompt: [1.5] }],
    ["/v1/completions", { model: "test-model", prompt: {} }],
    ["/v1/completions", { model: "test-model", prompt: [null] }],
  ];
  for (const [path, body] of cases) {
    const res = await s.post(path, body);
    const j = await res.json();
    assert.equal(
      res.status,
      400,
      `${path} ${JSON.stringify(body)} → ${res.status} ${JSON.stringify(j)}`,
    );
    assert.equal(j.error.type, "BadRequestError");
    assert.equal(j.error.code, 400);
    assert.equal(typeof j.error.message, "string");
    assert.ok("param" in j.error);
  }
});

Deno.test("unknown fields are ignored", async () => {
  await using s = await startSim();
  const res = await s.post(
    "/v1/chat/completions",
    chat({ temperature: 0.2, top_p: 0.9, stop: ["x"], user: "u", foo: { bar: 1 } }),
  );
  assert.equal(res.status, 200);
  await res.body?.cancel();
});

Deno.test("unknown model is 404 with param model", async () => {
  await using s = await startSim();
  const res = await s.post("/v1/completions", { model: "ghost", prompt: "x" });
  assert.equal(res.status, 404);
  const j = await res.json();
  assert.equal(j.error.type, "NotFoundError");
  assert.equal(j.error.param, "model");
});

Deno.test("404 and 405 in the error shape", async () => {
  await using s = await startSim();
  const a = await fetch(`${s.url}/v2/nothing`);
  assert.equal(a.status, 404);
  assert.equal((await a.json()).error.code, 404);
  const b = await fetch(`${s.url}/v1/chat/completions`);
  assert.equal(b.status, 405);
  assert.equal((await b.json()).error.code, 405);
  assert.match(b.headers.get("allow") ?? "", /POST/);
});

Deno.test("a body that is not JSON: 400 naming the parse error, sized or chunked", async () => {
  await using s = await startSim();
  const sized = await s.post("/v1/chat/completions", "{not json");
  const chunked = await fetch(`${s.url}/v1/chat/completions`, {
    method: "POST",
    body: ReadableStream.from([new TextEncoder().encode("{not json")]),
    headers: { "content-type": "application/json" },
  });
  for (const res of [sized, chunked]) {
    assert.equal(res.status, 400);
    const { error } = await res.json();
    assert.match(error.message, /^Invalid JSON in request body: \S/);
    assert.equal(error.type, "BadRequestError");
  }
});

Deno.test("request body limit → 413", async () => {
  await using s = await startSim(["--max-request-body-size-mb", "1"]);
  const big = JSON.stringify(chat({ pad: "x".repeat(1_100_000) }));
  const res = await s.post("/v1/chat/completions", big);
  assert.equal(res.status, 413);
  assert.equal((await res.json()).error.code, 413);
  // Chunked (no content-length) bodies are cut off too.
  const stream = new ReadableStream({
    start(c) {
      c.enqueue(new TextEncoder().encode(big));
      c.close();
    },
  });
  const res2 = await fetch(`${s.url}/v1/chat/completions`, {
    method: "POST",
    body: stream,
    headers: { "content-type": "application/json" },
  });
  assert.equal(res2.status, 413);
  await res2.body?.cancel();
});

Deno.test("pod headers and X-Request-Id echo", async () => {
  await using s = await startSim(["--enable-request-id-headers"], {
    POD_NAME: "pod-a",
    POD_NAMESPACE: "ns-b",
  });
  const res = await s.post("/v1/chat/completions", chat(), { "x-request-id": "req-123" });
  assert.equal(res.headers.get("x-inference-pod"), "pod-a");
  assert.equal(res.headers.get("x-inference-port"), String(s.running.ranks[0].port));
  assert.equal(res.headers.get("x-inference-namespace"), "ns-b");
  assert.equal(res.headers.get("x-request-id"), "req-123");
  assert.equal((await res.json()).id, "chatcmpl-req-123");
  const h = await fetch(`${s.url}/health`);
  assert.equal(h.headers.get("x-inference-pod"), "pod-a");
  await h.body?.cancel();
});

Deno.test("no pod headers without POD_NAME", async () => {
  await using s = await startSim();
  const res = await fetch(`${s.url}/v1/models`);
  assert.equal(res.headers.get("x-inference-pod"), null);
  assert.equal(res.headers.get("x-request-id"), null);
  await res.body?.cancel();
});

Deno.test("health, version, and readiness after startup-duration", async () => {
  await using s = await startSim(["--startup-duration", "400ms"]);
  assert.equal(await fetch(`${s.url}/health`).then((r) => r.status), 200);
  const v = await fetch(`${s.url}/version`).then((r) => r.json());
  assert.equal(typeof v.version, "string");
  for (const p of ["/ready", "/health/ready"]) {
    const r = await fetch(s.url + p);
    assert.equal(r.status, 503);
    assert.equal((await r.json()).error.type, "ServiceUnavailableError");
  }
  await sleep(500);
  for (const p of ["/ready", "/health/ready"]) {
    const r = await fetch(s.url + p);
    assert.equal(r.status, 200);
    await r.body?.cancel();
  }
});

Deno.test("data-parallel ranks listen on their own ports", async () => {
  await using s = await startSim(["--data-parallel-size", "3"]);
  assert.equal(s.running.ranks.length, 3);
  const ports = new Set(s.running.ranks.map((r) => r.port));
  assert.equal(ports.size, 3);
  for (const r of s.running.ranks) {
    const res = await fetch(`${r.url}/v1/models`);
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
});
