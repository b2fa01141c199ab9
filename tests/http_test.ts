/** Raw HTTP: SSE framing, bad inputs, 404/405/413, headers, readiness. */
import assert from "node:assert/strict";
import { rawHttp, sleep, sseEvents, startSim } from "./helpers.ts";
import { loadConfig } from "../lib/config.ts";
import { Logger } from "../lib/log.ts";
import { Simulator } from "../lib/simulator.ts";
import { selectTokenizer } from "../lib/tokenizer/select.ts";
import { createRouter } from "../routes/router.ts";
import { ROUTES } from "../routes/table.ts";
import { header } from "../routes/http.ts";

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

Deno.test("header(): a served request's headers as req.headers has them; other Requests too", async () => {
  const seen: Record<string, [string | null, string | null]> = {};
  const names = ["x-multi", "content-type", "host", "x-absent"];
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    for (const n of names) seen[n] = [header(req, n), req.headers.get(n)];
    return new Response("ok");
  });
  const url = `http://127.0.0.1:${server.addr.port}`;
  const { text } = await rawHttp(
    url,
    "GET / HTTP/1.1\r\nHost: example.test:1\r\nX-Multi: a\r\nx-multi: b\r\n" +
      "Content-Type: text/x\r\nConnection: close\r\n\r\n",
  );
  assert.match(text, /^HTTP\/1.1 200/);
  assert.deepEqual(seen["x-multi"], ["a, b", "a, b"]);
  assert.deepEqual(seen["content-type"], ["text/x", "text/x"]);
  assert.deepEqual(seen["host"], ["example.test:1", "example.test:1"]);
  assert.deepEqual(seen["x-absent"], [null, null]);
  const made = new Request("http://x/", { headers: [["X-A", "1"], ["x-a", "2"]] });
  assert.equal(header(made, "x-a"), "1, 2");
});

Deno.test("a zero-latency answer to a body in hand is made without a promise; a late body is waited for", async () => {
  const loaded = loadConfig(["--model", "test-model"], {});
  const log = new Logger("error");
  const sim = new Simulator(loaded, log, 0, (await selectTokenizer(loaded, {}, log)).create());
  const router = createRouter(sim, ROUTES, 0, {});
  const kinds: string[] = [];
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const out = router(req);
    kinds.push(out instanceof Promise ? "promise" : "response");
    return out;
  });
  const url = `http://127.0.0.1:${server.addr.port}`;
  for (const stream of [false, true]) {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(chat({ max_tokens: 3, stream })),
    });
    assert.equal(res.status, 200);
    await res.text();
  }
  assert.deepEqual(kinds, ["response", "response"]);
  // The same request with its body sent in two parts, 100 ms apart.
  const body = JSON.stringify(chat({ max_tokens: 3 }));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const enc = new TextEncoder();
  await conn.write(enc.encode(
    `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.slice(0, 10)}`,
  ));
  await sleep(100);
  await conn.write(enc.encode(body.slice(10)));
  const answer = await new Response(conn.readable).text();
  assert.match(answer, /^HTTP\/1.1 200/);
  assert.match(answer, /"object":"chat.completion"/);
  assert.deepEqual(kinds, ["response", "response", "promise"]);
});
