/**
 * Logprobs on chat, completions and Responses (tools-and-logprobs.md,
 * "Logprobs"), through the openai SDK: the values, the defaults, streams
 * that equal the complete answer, and vLLM's limit of 20.
 */
import assert from "node:assert/strict";
import type OpenAI from "openai";
import { startSim } from "./helpers.ts";

/** The spec's formula, computed independently: float64, main first, then the alternative. */
const expected = (pos: number, alt: number) => -1.0 - (pos % 3) * 0.1 - alt * 0.5;
const bytes = (s: string) => Array.from(new TextEncoder().encode(s));
const MESSAGES: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "hi" }];

Deno.test("chat logprobs: per token, k top entries with the token first; top_logprobs defaults to 1", async () => {
  await using s = await startSim();
  const r = await s.client.chat.completions.create({
    model: "test-model",
    messages: MESSAGES,
    max_tokens: 12,
    ignore_eos: true,
    logprobs: true,
    top_logprobs: 3,
    seed: 1,
  } as OpenAI.ChatCompletionCreateParamsNonStreaming);
  const content = r.choices[0].logprobs!.content!;
  assert.equal(content.length, 12);
  assert.equal(content.map((c) => c.token).join(""), r.choices[0].message.content);
  content.forEach((c, pos) => {
    assert.equal(c.logprob, expected(pos, 0));
    assert.deepEqual(c.bytes, bytes(c.token));
    assert.equal(c.top_logprobs.length, 3);
    assert.deepEqual(c.top_logprobs[0], { token: c.token, logprob: c.logprob, bytes: c.bytes });
    for (let j = 1; j < 3; j++) {
      const alt = c.top_logprobs[j];
      assert.equal(alt.token, `${c.token}_${j}`);
      assert.equal(alt.logprob, expected(pos, j));
      assert.deepEqual(alt.bytes, bytes(alt.token));
    }
  });
  const dflt = await s.client.chat.completions.create({
    model: "test-model",
    messages: MESSAGES,
    max_tokens: 2,
    logprobs: true,
  });
  assert.ok(dflt.choices[0].logprobs!.content!.every((c) => c.top_logprobs.length === 1));
  const zero = await s.post("/v1/chat/completions", {
    model: "test-model",
    messages: MESSAGES,
    max_tokens: 2,
    logprobs: true,
    top_logprobs: 0,
  });
  const entry = (await zero.json()).choices[0].logprobs.content[0];
  assert.equal("top_logprobs" in entry, false, "k = 0: the key is left out");
  const off = await s.client.chat.completions.create({
    model: "test-model",
    messages: MESSAGES,
    max_tokens: 2,
  });
  assert.equal(off.choices[0].logprobs, null);
});

Deno.test("chat logprobs: a stream carries the complete answer's entries, position = token index", async () => {
  await using s = await startSim();
  const body = {
    model: "test-model",
    messages: MESSAGES,
    max_tokens: 30,
    ignore_eos: true,
    logprobs: true,
    top_logprobs: 2,
    seed: 5,
  };
  const whole = await s.client.chat.completions.create(body);
  const stream = await s.client.chat.completions.create({ ...body, stream: true });
  const entries: OpenAI.ChatCompletionTokenLogprob[] = [];
  for await (const chunk of stream) entries.push(...(chunk.choices[0]?.logprobs?.content ?? []));
  assert.deepEqual(entries, whole.choices[0].logprobs!.content);
});

Deno.test("completions logprobs: tokens, values, top maps and byte offsets; streamed the same", async () => {
  await using s = await startSim(["--mode", "echo"]);
  // Echo mode: the answer is the prompt, with a multi-byte character in it.
  const prompt = "café au lait, s'il vous plaît";
  const r = await s.client.completions.create({
    model: "test-model",
    prompt,
    logprobs: 2,
  });
  const lp = r.choices[0].logprobs!;
  assert.equal(lp.tokens!.join(""), r.choices[0].text);
  let offset = 0;
  lp.tokens!.forEach((t, pos) => {
    assert.equal(lp.token_logprobs![pos], expected(pos, 0));
    assert.deepEqual(lp.top_logprobs![pos], {
      [t]: expected(pos, 0),
      [`${t}_1`]: expected(pos, 1),
    });
    assert.equal(lp.text_offset![pos], offset, "byte offsets");
    offset += bytes(t).length;
  });
  const stream = await s.client.completions.create({
    model: "test-model",
    prompt,
    logprobs: 2,
    stream: true,
  });
  const streamed = { tokens: [] as string[], values: [] as number[], offsets: [] as number[] };
  for await (const chunk of stream) {
    const l = chunk.choices[0]?.logprobs;
    if (!l) continue;
    streamed.tokens.push(...l.tokens!);
    streamed.values.push(...l.token_logprobs!);
    streamed.offsets.push(...l.text_offset!);
  }
  assert.deepEqual(streamed, {
    tokens: lp.tokens,
    values: lp.token_logprobs,
    offsets: lp.text_offset,
  });
  const none = await s.client.completions.create({ model: "test-model", prompt, logprobs: 0 });
  assert.equal(none.choices[0].logprobs, null, "logprobs: 0 gives none");
});

Deno.test("responses logprobs: only with include; top_logprobs defaults to 0; streamed the same", async () => {
  await using s = await startSim();
  const body = {
    model: "test-model",
    input: "hi",
    max_output_tokens: 8,
    include: ["message.output_text.logprobs" as const],
    top_logprobs: 2,
  };
  const r = await s.client.responses.create(body);
  const item = r.output[0];
  assert.equal(item.type, "message");
  if (item.type !== "message") return;
  const part = item.content[0] as OpenAI.Responses.ResponseOutputText;
  assert.equal(part.logprobs!.map((l) => l.token).join(""), part.text);
  part.logprobs!.forEach((l, pos) => {
    assert.equal(l.logprob, expected(pos, 0));
    assert.deepEqual(l.top_logprobs!.map((t) => t.logprob), [expected(pos, 0), expected(pos, 1)]);
  });
  const k0 = await s.client.responses.create({ ...body, top_logprobs: undefined });
  const p0 = (k0.output[0] as OpenAI.Responses.ResponseOutputMessage).content[0];
  assert.ok(
    (p0 as OpenAI.Responses.ResponseOutputText).logprobs!.every((l) => l.top_logprobs.length === 0),
  );
  const plain = await s.client.responses.create({ ...body, include: undefined });
  const pp = (plain.output[0] as OpenAI.Responses.ResponseOutputMessage).content[0];
  assert.equal("logprobs" in pp, false, "without include: no logprobs");
  const stream = await s.client.responses.create({ ...body, stream: true });
  const deltas: unknown[] = [];
  let completed: OpenAI.Responses.Response | undefined;
  for await (const e of stream) {
    if (e.type === "response.output_text.delta") deltas.push(...e.logprobs);
    if (e.type === "response.completed") completed = e.response;
  }
  const final = (completed!.output[0] as OpenAI.Responses.ResponseOutputMessage).content[0];
  assert.ok(deltas.length > 0);
  assert.deepEqual(deltas, (final as OpenAI.Responses.ResponseOutputText).logprobs);
});

Deno.test("logprobs limits: more than 20 or negative is a 400, as vLLM", async () => {
  await using s = await startSim();
  const cases: [string, string, Record<string, unknown>][] = [
    ["/v1/chat/completions", "top_logprobs", {
      messages: MESSAGES,
      logprobs: true,
      top_logprobs: 21,
    }],
    ["/v1/chat/completions", "top_logprobs", {
      messages: MESSAGES,
      logprobs: true,
      top_logprobs: -1,
    }],
    ["/v1/completions", "logprobs", { prompt: "hi", logprobs: 21 }],
    ["/v1/completions", "logprobs", { prompt: "hi", logprobs: -2 }],
    ["/v1/responses", "top_logprobs", { input: "hi", top_logprobs: 25 }],
  ];
  for (const [path, param, body] of cases) {
    const res = await s.post(path, { model: "test-model", ...body });
    const err = await res.json();
    assert.equal(res.status, 400, `${path} ${JSON.stringify(body)}`);
    assert.equal(err.error.param, param);
  }
  const over = await s.post("/v1/completions", { model: "test-model", prompt: "hi", logprobs: 21 });
  assert.equal(
    (await over.json()).error.message,
    "Requested sample logprobs of 21, which is greater than max allowed: 20",
  );
  const ok = await s.post("/v1/chat/completions", {
    model: "test-model",
    messages: MESSAGES,
    logprobs: true,
    top_logprobs: 20,
  });
  assert.equal(ok.status, 200);
});

Deno.test("logprobs: none on tool-call answers", async () => {
  await using s = await startSim();
  const r = await s.client.chat.completions.create({
    model: "test-model",
    messages: MESSAGES,
    logprobs: true,
    tools: [{
      type: "function",
      function: { name: "f", parameters: { type: "object", properties: {} } },
    }],
    tool_choice: "required",
  });
  assert.equal(r.choices[0].finish_reason, "tool_calls");
  assert.equal(r.choices[0].logprobs, null);
});
