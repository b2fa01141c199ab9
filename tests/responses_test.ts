/** POST /v1/responses through the official openai SDK, raw requests and the exact SSE bytes. */
import assert from "node:assert/strict";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText } from "ai";
import type OpenAI from "openai";
import { responsesEncoder } from "../lib/api/openai/responses.ts";
import type { ResponsesRequest } from "../lib/api/openai/responses_protocol.ts";
import type { Admitted } from "../lib/serving/pipeline.ts";
import { startSim } from "./helpers.ts";

type Event = OpenAI.Responses.ResponseStreamEvent;

/** The event types of a text turn with `tokens` deltas. */
function textTurn(tokens: number): string[] {
  return [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    ...Array<string>(tokens).fill("response.output_text.delta"),
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
  ];
}

Deno.test("responses: non-streaming text answer through the SDK", async () => {
  await using s = await startSim(["--seed", "7"]);
  const r = await s.client.responses.create({
    model: "test-model",
    input: "Hello there",
    max_output_tokens: 5,
    ignore_eos: true,
  } as OpenAI.Responses.ResponseCreateParamsNonStreaming);
  assert.match(r.id, /^resp_/);
  assert.equal(r.object, "response");
  assert.equal(r.status, "completed");
  assert.equal(r.model, "test-model");
  assert.ok(Number.isInteger(r.created_at) && r.created_at > 1_600_000_000);
  assert.equal(r.output.length, 1);
  const item = r.output[0] as OpenAI.Responses.ResponseOutputMessage;
  assert.equal(item.type, "message");
  assert.equal(item.role, "assistant");
  assert.equal(item.status, "completed");
  assert.equal("id" in item, false, "no id on the message item of a complete answer");
  // What the Vercel AI SDK's openai provider reads: id, created_at, model, output_text parts.
  assert.equal(item.content[0].type, "output_text");
  const text = (item.content[0] as OpenAI.Responses.ResponseOutputText).text;
  assert.ok(text.length > 0);
  assert.equal(r.output_text, text);
  assert.deepEqual(r.text, { format: { type: "text" } });
  assert.equal(r.usage?.output_tokens, 5);
  assert.ok((r.usage?.input_tokens ?? 0) > 0);
  assert.equal(r.usage?.total_tokens, r.usage!.input_tokens + 5);
  assert.equal("instructions" in r, false, "no instructions key when none were sent");
});

Deno.test("responses: streaming event sequence through the SDK", async () => {
  await using s = await startSim(["--seed", "11"]);
  const stream = await s.client.responses.create({
    model: "test-model",
    input: "Tell me something",
    max_output_tokens: 6,
    ignore_eos: true,
    stream: true,
  } as OpenAI.Responses.ResponseCreateParamsStreaming);
  const events: Event[] = [];
  for await (const e of stream) events.push(e);
  assert.deepEqual(events.map((e) => e.type), textTurn(6));
  for (const e of events) {
    assert.equal("output_index" in e, false);
    assert.equal("content_index" in e, false);
    assert.equal("sequence_number" in e, false);
  }
  const created = events[0] as OpenAI.Responses.ResponseCreatedEvent;
  assert.equal(created.response.status, "in_progress");
  assert.equal("output" in created.response, false);
  assert.equal("usage" in created.response, false);
  const added = events[2] as OpenAI.Responses.ResponseOutputItemAddedEvent;
  const addedItem = added.item as OpenAI.Responses.ResponseOutputMessage;
  const itemId = addedItem.id;
  assert.match(itemId, /^msg_/);
  assert.equal(addedItem.status, "in_progress");
  assert.deepEqual(addedItem.content, []);
  const deltas = events.filter((e) => e.type === "response.output_text.delta");
  for (const d of deltas) assert.equal(d.item_id, itemId);
  const text = deltas.map((d) => d.delta).join("");
  const done = events.find((e) => e.type === "response.output_text.done")!;
  assert.equal(done.text, text);
  const partDone = events.find((e) => e.type === "response.content_part.done")!;
  assert.deepEqual(partDone.part, { type: "output_text", text });
  const completed = events.at(-1) as OpenAI.Responses.ResponseCompletedEvent;
  assert.equal(completed.response.status, "completed");
  assert.equal(completed.response.id, created.response.id);
  const item = completed.response.output[0] as OpenAI.Responses.ResponseOutputMessage;
  assert.equal(item.id, itemId);
  assert.equal((item.content[0] as OpenAI.Responses.ResponseOutputText).text, text);
  assert.equal(completed.response.usage?.output_tokens, 6);
  assert.ok((completed.response.usage?.input_tokens ?? 0) > 0);
});

Deno.test("responses: the request id names the response and its item", async () => {
  await using s = await startSim();
  const body = { model: "test-model", input: "hi", max_output_tokens: 2, stream: true };
  const res = await s.post("/v1/responses", body, { "X-Request-Id": "abc-123" });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
  const text = await res.text();
  assert.ok(text.includes(`"id":"resp_abc-123"`));
  assert.ok(text.includes(`"item_id":"msg_abc-123"`));
  assert.ok(!text.includes("[DONE]"));
  const plain = await s.post("/v1/responses", { ...body, stream: false }, {
    "X-Request-Id": "abc-123",
  });
  assert.equal((await plain.json()).id, "resp_abc-123");
});

Deno.test("responses: item input, instructions echoed but not counted", async () => {
  await using s = await startSim(["--seed", "3"]);
  const input = [
    { role: "system", content: "You are terse." },
    { type: "message", role: "user", content: [{ type: "input_text", text: "Weather in Paris?" }] },
    {
      type: "function_call",
      id: "fc_1",
      call_id: "call_1",
      name: "get_weather",
      arguments: '{"city":"Paris"}',
      status: "completed",
    },
    { type: "function_call_output", call_id: "call_1", output: "sunny" },
    { role: "assistant", content: [{ type: "output_text", text: "It is sunny." }] },
    { role: "user", content: [{ type: "", text: "Thanks" }] },
  ];
  const withInstr = await s.client.responses.create({
    model: "test-model",
    input,
    instructions: "Answer in French.",
    max_output_tokens: 3,
  } as OpenAI.Responses.ResponseCreateParamsNonStreaming);
  assert.equal(withInstr.instructions, "Answer in French.");
  const without = await s.client.responses.create({
    model: "test-model",
    input,
    max_output_tokens: 3,
  } as OpenAI.Responses.ResponseCreateParamsNonStreaming);
  assert.equal(withInstr.usage?.input_tokens, without.usage?.input_tokens);
  // The items count as the equivalent chat messages.
  const chat = await s.client.chat.completions.create({
    model: "test-model",
    messages: [
      { role: "system", content: "You are terse." },
      { role: "user", content: "Weather in Paris?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [{
          id: "fc_1",
          type: "function",
          function: { name: "get_weather", arguments: '{"city":"Paris"}' },
        }],
      },
      { role: "tool", tool_call_id: "call_1", content: "sunny" },
      { role: "assistant", content: "It is sunny." },
      { role: "user", content: "Thanks" },
    ],
    max_tokens: 3,
  });
  assert.equal(without.usage?.input_tokens, chat.usage?.prompt_tokens);
});

Deno.test("responses: a string input is one user message", async () => {
  await using s = await startSim();
  const ask = (input: unknown) =>
    s.post("/v1/responses", { model: "test-model", input, max_output_tokens: 1 })
      .then((r) => r.json());
  const a = await ask("Hello, world! How are you?");
  const b = await ask([{ role: "user", content: "Hello, world! How are you?" }]);
  const c = await ask([{
    role: "user",
    content: [{ type: "input_text", text: "Hello, world! How are you?" }],
  }]);
  assert.equal(a.usage.input_tokens, b.usage.input_tokens);
  assert.equal(a.usage.input_tokens, c.usage.input_tokens);
});

Deno.test("responses: echo mode answers with the last item's text", async () => {
  await using s = await startSim(["--mode", "echo"]);
  const echo = async (input: unknown) => {
    const r = await s.client.responses.create({
      model: "test-model",
      input,
    } as OpenAI.Responses.ResponseCreateParamsNonStreaming);
    return r.output_text;
  };
  assert.equal(await echo("echo me"), "echo me");
  assert.equal(
    await echo([{
      role: "user",
      content: [
        { type: "input_text", text: "look" },
        { type: "input_image", image_url: "https://example.com/a.png" },
        { type: "input_audio", data: "AAAA", format: "wav" },
      ],
    }]),
    "look\nimage: https://example.com/a.png\naudio: wav",
  );
  assert.equal(
    await echo([
      { role: "user", content: "x" },
      { type: "function_call_output", call_id: "c", output: "42 degrees" },
    ]),
    "42 degrees",
  );
  assert.equal(
    await echo([{ type: "function_call", call_id: "c", name: "f", arguments: '{"a":1}' }]),
    'f({"a":1})',
  );
});

const OBJECT = { type: "object", properties: {} };

Deno.test("responses: accepted fields: tools in both shapes, text.format, n, kv_transfer_params", async () => {
  await using s = await startSim(["--served-model-name", "alpha", "beta"]);
  const res = await s.post("/v1/responses", {
    model: "beta",
    input: "hi",
    max_output_tokens: 2,
    n: 3,
    text: { format: { type: "json_schema", name: "x", schema: { type: "object" } } },
    tools: [
      { type: "function", name: "f", description: "d", parameters: OBJECT },
      { type: "function", function: { name: "g", parameters: OBJECT } },
      { name: "h", parameters: OBJECT },
    ],
    tool_choice: "none",
    include: ["message.output_text.logprobs"],
    top_logprobs: 2,
    kv_transfer_params: { do_remote_decode: true },
  });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.model, "alpha", "the displayed model: the first served name");
  assert.equal(body.output.length, 1, "no n: one output item");
  assert.equal(body.output[0].type, "message");
  assert.deepEqual(body.text, { format: { type: "text" } });
  assert.equal("kv_transfer_params" in body, false);
});

Deno.test("responses: bad input is a 400 in the OpenAI error shape", async () => {
  await using s = await startSim();
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["missing input", {}, /input is required$/],
    ["null input", { input: null }, /input is required$/],
    ["number input", { input: 5 }, /input must be a string or array/],
    ["empty input array", { input: [] }, /input must not be an empty array/],
    [
      "unknown item type",
      { input: [{ type: "reasoning", summary: [] }] },
      /unsupported input item type "reasoning"/,
    ],
    [
      "unknown part type",
      { input: [{ role: "user", content: [{ type: "input_file", file_id: "f" }] }] },
      /unsupported input content type "input_file"/,
    ],
    [
      "non-string text",
      { input: [{ role: "user", content: [{ type: "input_text", text: 1 }] }] },
      /must be a string/,
    ],
    [
      "max_output_tokens 0",
      { input: "hi", max_output_tokens: 0 },
      /max_output_tokens must be at least 1, got 0/,
    ],
    [
      "max_output_tokens -3",
      { input: "hi", max_output_tokens: -3 },
      /max_output_tokens must be at least 1/,
    ],
    [
      "web_search tool",
      { input: "hi", tools: [{ type: "web_search" }] },
      /unsupported tool type "web_search"/,
    ],
    [
      "tool without a name",
      { input: "hi", tools: [{ type: "function", parameters: {} }] },
      /tool name is required/,
    ],
    ["tools not an array", { input: "hi", tools: {} }, /tools must be an array/],
    ["text not an object", { input: "hi", text: "plain" }, /'text' must be an object/],
    [
      "streamed prefill",
      { input: "hi", stream: true, kv_transfer_params: { do_remote_decode: true } },
      /Prefill does not support streaming/,
    ],
  ];
  for (const [what, extra, message] of cases) {
    const res = await s.post("/v1/responses", { model: "test-model", ...extra });
    assert.equal(res.status, 400, what);
    const body = await res.json();
    assert.equal(body.error.type, "BadRequestError", what);
    assert.equal(body.error.code, 400, what);
    assert.match(body.error.message, message, what);
  }
  // The SDK sees the same as a BadRequestError.
  await assert.rejects(
    s.client.responses.create({
      model: "test-model",
      input: "hi",
      max_output_tokens: 0,
    }),
    (e: unknown) => (e as { status?: number }).status === 400,
  );
  const unknown = await s.post("/v1/responses", { model: "nope", input: "hi" });
  assert.equal(unknown.status, 404);
  assert.equal((await unknown.json()).error.param, "model");
});

Deno.test("responses: X-Return-Error is honoured", async () => {
  await using s = await startSim();
  const res = await s.post("/v1/responses", { model: "test-model", input: "hi" }, {
    "X-Return-Error": "429",
  });
  assert.equal(res.status, 429);
  assert.equal((await res.json()).error.type, "RateLimitError");
});

/**
 * The fixed request of the golden tests, as the first request of a `--seed 7`
 * server. Its text and input_tokens follow the shared random text, tokenizer
 * and chat template: a change there changes these bytes (and only those values).
 */
const GOLDEN_REQUEST = {
  model: "test-model",
  input: "Hello",
  instructions: "Be brief.",
  max_output_tokens: 3,
};

const CREATED_AT = /"created_at":\d+/g;

/** A golden stream whose three created_at stamps are one value (compared as 0). */
function assertGoldenStream(text: string, expected: string): void {
  const stamps = text.match(CREATED_AT) ?? [];
  assert.equal(stamps.length, 3);
  assert.equal(new Set(stamps).size, 1, "one created_at for the whole stream");
  assert.equal(text.replace(CREATED_AT, `"created_at":0`), expected);
}

Deno.test("responses: golden SSE bytes", async () => {
  await using s = await startSim(["--seed", "7"]);
  const res = await s.post("/v1/responses", { ...GOLDEN_REQUEST, stream: true }, {
    "X-Request-Id": "fixed",
  });
  assert.equal(res.status, 200);
  const head =
    `{"id":"resp_fixed","model":"test-model","object":"response","created_at":0,"status":`;
  const item = (status: string, content: string) =>
    `{"type":"message","id":"msg_fixed","role":"assistant","status":"${status}","content":[${content}]}`;
  const part = `{"type":"output_text","text":"He painted the "}`;
  const expected = [
    `event: response.created\ndata: {"type":"response.created","response":${head}"in_progress",` +
    `"instructions":"Be brief.","text":{"format":{"type":"text"}}}}\n\n`,
    `event: response.in_progress\ndata: {"type":"response.in_progress","response":${head}` +
    `"in_progress","instructions":"Be brief.","text":{"format":{"type":"text"}}}}\n\n`,
    `event: response.output_item.added\ndata: {"type":"response.output_item.added","item":${
      item("in_progress", "")
    }}\n\n`,
    `event: response.content_part.added\ndata: {"type":"response.content_part.added",` +
    `"item_id":"msg_fixed","part":{"type":"output_text"}}\n\n`,
    ...["He ", "painted ", "the "].map((delta) =>
      `event: response.output_text.delta\ndata: {"type":"response.output_text.delta",` +
      `"item_id":"msg_fixed","delta":"${delta}"}\n\n`
    ),
    `event: response.output_text.done\ndata: {"type":"response.output_text.done",` +
    `"item_id":"msg_fixed","text":"He painted the "}\n\n`,
    `event: response.content_part.done\ndata: {"type":"response.content_part.done",` +
    `"item_id":"msg_fixed","part":${part}}\n\n`,
    `event: response.output_item.done\ndata: {"type":"response.output_item.done","item":${
      item("completed", part)
    }}\n\n`,
    `event: response.completed\ndata: {"type":"response.completed","response":${head}"completed",` +
    `"instructions":"Be brief.","output":[${
      item("completed", part)
    }],"text":{"format":{"type":"text"}},` +
    `"usage":{"input_tokens":6,"output_tokens":3,"total_tokens":9}}}\n\n`,
  ].join("");
  assertGoldenStream(await res.text(), expected);
});

Deno.test("responses: golden non-streaming body", async () => {
  await using s = await startSim(["--seed", "7"]);
  const res = await s.post("/v1/responses", GOLDEN_REQUEST, { "X-Request-Id": "fixed" });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "application/json");
  const text = await res.text();
  assert.match(text, /"created_at":\d+,/);
  assert.equal(
    text.replace(CREATED_AT, `"created_at":0`),
    `{"id":"resp_fixed","model":"test-model","object":"response","created_at":0,` +
      `"status":"completed","instructions":"Be brief.","output":[{"type":"message",` +
      `"role":"assistant","status":"completed","content":[{"type":"output_text",` +
      `"text":"He painted the "}]}],"text":{"format":{"type":"text"}},` +
      `"usage":{"input_tokens":6,"output_tokens":3,"total_tokens":9}}`,
  );
});

Deno.test("responses: a choice without tokens still closes its item and completes", () => {
  const body = { instructions: "", baseModel: "m" } as ResponsesRequest;
  const admitted = {
    model: { name: "m", lora: null },
    plans: [{ jsonSafe: true }],
  } as unknown as Admitted;
  const enc = responsesEncoder({ requestId: "z", created: 5 }, body, admitted);
  const wire = enc.start() + enc.choiceEnd(0, "cache_threshold", 0) +
    enc.end({ prompt: 4, completion: 0, cached: 0 });
  const events = wire.split("\n\n").filter((f) => f !== "").map((f) => {
    const [ev, data] = f.split("\n");
    const json = JSON.parse(data.slice("data: ".length));
    assert.equal(ev, `event: ${json.type}`);
    return json;
  });
  assert.deepEqual(events.map((e) => e.type), textTurn(0));
  const last = events.at(-1);
  assert.deepEqual(last.response.output, [{
    type: "message",
    id: "msg_z",
    role: "assistant",
    status: "completed",
    content: [{ type: "output_text" }],
  }]);
  assert.deepEqual(last.response.usage, { input_tokens: 4, total_tokens: 4 });
});

// --use-vllm-responses-format: vLLM's bytes, which clients built against
// OpenAI's wire format (the SDK's stream helper, the Vercel AI SDK) need.

const VLLM = "--use-vllm-responses-format";

Deno.test("responses (vLLM format): the SDK's stream helper and finalResponse()", async () => {
  await using s = await startSim(["--seed", "11", VLLM]);
  const stream = s.client.responses.stream(
    {
      model: "test-model",
      input: "Tell me something",
      max_output_tokens: 6,
      ignore_eos: true,
    } as Parameters<OpenAI["responses"]["stream"]>[0],
  );
  const deltas: string[] = [];
  stream.on(
    "response.output_text.delta",
    (e: OpenAI.Responses.ResponseTextDeltaEvent) => deltas.push(e.delta),
  );
  const final = await stream.finalResponse();
  const text = deltas.join("");
  assert.equal(deltas.length, 6);
  assert.ok(text.length > 0);
  assert.equal(final.output_text, text);
  const item = final.output[0] as OpenAI.Responses.ResponseOutputMessage;
  assert.equal(item.id, `msg_${final.id.slice("resp_".length)}`);
  const part = item.content[0] as OpenAI.Responses.ResponseOutputText;
  assert.equal(item.content.length, 1);
  assert.equal(part.type, "output_text");
  assert.equal(part.text, text);
  assert.deepEqual(part.annotations, []);
  assert.equal(final.status, "incomplete", "it stopped at max_output_tokens, as vLLM says");
  assert.deepEqual(final.incomplete_details, { reason: "max_output_tokens" });
  assert.equal(final.usage?.output_tokens, 6);
  assert.equal(final.usage?.total_tokens, final.usage!.input_tokens + 6);
  assert.equal(final.usage?.input_tokens_details.cached_tokens, 0);
  assert.equal(final.usage?.output_tokens_details.reasoning_tokens, 0);
});

Deno.test("responses (vLLM format): events are numbered and indexed", async () => {
  await using s = await startSim(["--seed", "3", VLLM]);
  const stream = await s.client.responses.create({
    model: "test-model",
    input: "hi",
    max_output_tokens: 4,
    ignore_eos: true,
    stream: true,
  } as OpenAI.Responses.ResponseCreateParamsStreaming);
  const events: Event[] = [];
  for await (const e of stream) events.push(e);
  assert.deepEqual(events.map((e) => e.type), textTurn(4));
  assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
  for (const e of events.slice(2, -1)) {
    assert.equal((e as { output_index?: number }).output_index, 0, e.type);
  }
  const created = events[0] as OpenAI.Responses.ResponseCreatedEvent;
  assert.deepEqual(created.response.output, []);
  assert.equal(created.response.usage, null);
  assert.equal(created.response.status, "in_progress");
});

Deno.test("responses (vLLM format): the Vercel AI SDK's generateText", async () => {
  await using s = await startSim(["--seed", "5", VLLM]);
  const openai = createOpenAI({ baseURL: s.url + "/v1", apiKey: "x" });
  const r = await generateText({ model: openai("test-model"), prompt: "hi" });
  assert.ok(r.text.length > 0);
  assert.ok((r.usage.inputTokens ?? 0) > 0);
  assert.ok((r.usage.outputTokens ?? 0) > 0);
  assert.equal(r.usage.totalTokens, r.usage.inputTokens! + r.usage.outputTokens!);
  // The same answer as a fresh server with the same seed gives the openai SDK.
  await using t = await startSim(["--seed", "5", VLLM]);
  const direct = await t.client.responses.create({ model: "test-model", input: "hi" });
  assert.equal(r.text, direct.output_text);
  assert.equal(r.usage.inputTokens, direct.usage?.input_tokens);
  assert.equal(r.usage.outputTokens, direct.usage?.output_tokens);
});

Deno.test("responses (vLLM format): the Vercel AI SDK's streamText", async () => {
  await using s = await startSim(["--seed", "9", VLLM]);
  const openai = createOpenAI({ baseURL: s.url + "/v1", apiKey: "x" });
  const result = streamText({ model: openai("test-model"), prompt: "hi", maxOutputTokens: 7 });
  let text = "";
  for await (const piece of result.textStream) text += piece;
  assert.ok(text.length > 0);
  assert.equal(await result.text, text);
  const usage = await result.usage;
  assert.ok((usage.inputTokens ?? 0) > 0);
  assert.ok((usage.outputTokens ?? 0) > 0 && usage.outputTokens! <= 7);
  assert.equal(usage.totalTokens, usage.inputTokens! + usage.outputTokens!);
  await using t = await startSim(["--seed", "9", VLLM]);
  const direct = await t.client.responses.create({
    model: "test-model",
    input: "hi",
    max_output_tokens: 7,
  });
  assert.equal(text, direct.output_text);
  assert.equal(usage.outputTokens, direct.usage?.output_tokens);
});

Deno.test("responses (vLLM format): request fields echoed in the response object", async () => {
  // An object without properties breaks the tool rules: echoed as sent all the same.
  await using s = await startSim([VLLM, "--max-model-len", "100", "--skip-tool-validation"]);
  const res = await s.post("/v1/responses", {
    model: "test-model",
    input: "hi",
    temperature: 0.5,
    top_p: 0.9,
    metadata: { k: "v" },
    user: "u1",
    tools: [{ type: "function", name: "f", description: "d", parameters: { type: "object" } }],
    tool_choice: "none",
    text: { format: { type: "text" } },
    include: ["message.output_text.logprobs"],
    top_logprobs: 2,
  });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.temperature, 0.5);
  assert.equal(body.top_p, 0.9);
  assert.deepEqual(body.metadata, { k: "v" });
  assert.equal(body.user, "u1");
  assert.equal(body.tool_choice, "none");
  assert.deepEqual(body.tools, [{
    name: "f",
    parameters: { type: "object" },
    strict: null,
    type: "function",
    description: "d",
  }]);
  assert.deepEqual(body.text, { format: { type: "text" }, verbosity: null });
  assert.equal(body.top_logprobs, 2);
  assert.equal(body.instructions, null);
  // No max_output_tokens: what the context window leaves after the prompt.
  assert.equal(body.max_output_tokens, 100 - body.usage.input_tokens);
});

Deno.test("responses (vLLM format): an answer without text opens no item", () => {
  const body = {
    instructions: "",
    baseModel: "m",
    toolDefs: [],
  } as unknown as ResponsesRequest;
  body.vllm = {
    maxModelLen: 64,
    temperature: undefined,
    topP: undefined,
    metadata: undefined,
    parallelToolCalls: undefined,
    maxToolCalls: undefined,
    previousResponseId: undefined,
    reasoning: undefined,
    serviceTier: undefined,
    text: undefined,
    truncation: undefined,
    user: undefined,
  };
  const admitted = {
    model: { name: "m", lora: null },
    plans: [{ jsonSafe: true, promptTokens: 4 }],
  } as unknown as Admitted;
  const enc = responsesEncoder({ requestId: "z", created: 5 }, body, admitted);
  const wire = enc.start() + enc.token(0, "", 0, "stop", null) +
    enc.choiceEnd(0, "stop", 1) + enc.end({ prompt: 4, completion: 1, cached: 2 });
  const events = wire.split("\n\n").filter((f) => f !== "").map((f) =>
    JSON.parse(f.split("\n")[1].slice("data: ".length))
  );
  assert.deepEqual(events.map((e) => [e.type, e.sequence_number]), [
    ["response.created", 0],
    ["response.in_progress", 1],
    ["response.completed", 2],
  ]);
  const last = events[2].response;
  assert.equal(last.status, "completed");
  assert.deepEqual(last.output, [{
    id: "msg_z",
    content: [],
    role: "assistant",
    status: "completed",
    type: "message",
    phase: null,
  }]);
  assert.deepEqual(last.usage, {
    input_tokens: 4,
    input_tokens_details: {
      cached_tokens: 2,
      input_tokens_per_turn: [],
      cached_tokens_per_turn: [],
    },
    output_tokens: 1,
    output_tokens_details: {
      reasoning_tokens: 0,
      tool_output_tokens: 0,
      output_tokens_per_turn: [],
      tool_output_tokens_per_turn: [],
    },
    total_tokens: 5,
  });
});

/** vLLM's response object for GOLDEN_REQUEST, around its status, output and usage. */
function vllmResponse(details: string, output: string, status: string, usage: string): string {
  return `{"id":"resp_fixed","created_at":0,"incomplete_details":${details},` +
    `"instructions":"Be brief.","metadata":null,"model":"test-model","object":"response",` +
    `"output":${output},"parallel_tool_calls":true,"temperature":1.0,"tool_choice":"auto",` +
    `"tools":[],"top_p":1.0,"background":false,"max_output_tokens":3,"max_tool_calls":null,` +
    `"previous_response_id":null,"prompt":null,"reasoning":null,"service_tier":"auto",` +
    `"status":"${status}","text":null,"top_logprobs":null,"truncation":"disabled",` +
    `"usage":${usage},"user":null,"input_messages":null,"output_messages":null}`;
}

const VLLM_USAGE = `{"input_tokens":6,"input_tokens_details":{"cached_tokens":0,` +
  `"input_tokens_per_turn":[],"cached_tokens_per_turn":[]},"output_tokens":3,` +
  `"output_tokens_details":{"reasoning_tokens":0,"tool_output_tokens":0,` +
  `"output_tokens_per_turn":[],"tool_output_tokens_per_turn":[]},"total_tokens":9}`;
const VLLM_PART =
  `{"annotations":[],"text":"He painted the ","type":"output_text","logprobs":null}`;
const VLLM_OUTPUT = `[{"id":"msg_fixed","content":[${VLLM_PART}],"role":"assistant",` +
  `"status":"completed","type":"message","phase":null}]`;
const VLLM_INCOMPLETE = `{"reason":"max_output_tokens"}`;

Deno.test("responses (vLLM format): golden SSE bytes", async () => {
  await using s = await startSim(["--seed", "7", VLLM]);
  const res = await s.post("/v1/responses", { ...GOLDEN_REQUEST, stream: true }, {
    "X-Request-Id": "fixed",
  });
  assert.equal(res.status, 200);
  const event = (type: string, data: string) => `event: ${type}\ndata: ${data}\n\n`;
  const started = vllmResponse("null", "[]", "in_progress", "null");
  const at = `"item_id":"fixed","output_index":0`;
  const expected = [
    event(
      "response.created",
      `{"response":${started},"sequence_number":0,"type":"response.created"}`,
    ),
    event(
      "response.in_progress",
      `{"response":${started},"sequence_number":1,"type":"response.in_progress"}`,
    ),
    event(
      "response.output_item.added",
      `{"item":{"id":"fixed","content":[],"role":"assistant","status":"in_progress",` +
        `"type":"message","phase":null},"output_index":0,"sequence_number":2,` +
        `"type":"response.output_item.added"}`,
    ),
    event(
      "response.content_part.added",
      `{"content_index":0,${at},"part":{"annotations":[],"text":"","type":"output_text",` +
        `"logprobs":[]},"sequence_number":3,"type":"response.content_part.added"}`,
    ),
    ...["He ", "painted ", "the "].map((delta, i) =>
      event(
        "response.output_text.delta",
        `{"content_index":0,"delta":"${delta}","item_id":"fixed","logprobs":[],` +
          `"output_index":0,"sequence_number":${4 + i},"type":"response.output_text.delta"}`,
      )
    ),
    event(
      "response.output_text.done",
      `{"content_index":0,"item_id":"fixed","logprobs":[],"output_index":0,` +
        `"sequence_number":7,"text":"He painted the ","type":"response.output_text.done"}`,
    ),
    event(
      "response.content_part.done",
      `{"content_index":0,${at},"part":${VLLM_PART},"sequence_number":8,` +
        `"type":"response.content_part.done"}`,
    ),
    event(
      "response.output_item.done",
      `{"item":{"id":"fixed","content":[${VLLM_PART}],"role":"assistant",` +
        `"status":"completed","type":"message","phase":null,"summary":[]},"output_index":0,` +
        `"sequence_number":9,"type":"response.output_item.done"}`,
    ),
    event(
      "response.completed",
      `{"response":${
        vllmResponse(VLLM_INCOMPLETE, VLLM_OUTPUT, "incomplete", VLLM_USAGE)
      },"sequence_number":10,"type":"response.completed"}`,
    ),
  ].join("");
  assertGoldenStream(await res.text(), expected);
});

Deno.test("responses (vLLM format): golden non-streaming body", async () => {
  await using s = await startSim(["--seed", "7", VLLM]);
  const res = await s.post("/v1/responses", GOLDEN_REQUEST, { "X-Request-Id": "fixed" });
  assert.equal(res.status, 200);
  const text = await res.text();
  assert.equal(
    text.replace(CREATED_AT, `"created_at":0`),
    vllmResponse(VLLM_INCOMPLETE, VLLM_OUTPUT, "incomplete", VLLM_USAGE),
  );
});
