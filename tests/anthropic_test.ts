/**
 * POST /v1/messages through the official @anthropic-ai/sdk and raw fetch:
 * answers, streams (events and exact bytes), request conversion, and
 * Anthropic-shaped errors and authentication (messages.md).
 */
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import { parseMessagesRequest } from "../lib/api/anthropic/protocol.ts";
import { startSim, type TestServer } from "./helpers.ts";

function anthropic(s: TestServer, apiKey = "x"): Anthropic {
  return new Anthropic({ baseURL: s.url, apiKey, maxRetries: 0 });
}

const HELLO: Anthropic.MessageParam[] = [{ role: "user", content: "Hello" }];

/** Body fields vllm-sim reads that the SDK's types do not know. */
type Extra = { ignore_eos?: boolean };

Deno.test("messages: non-streaming answer through the SDK", async () => {
  await using s = await startSim(["--seed", "7"]);
  const client = anthropic(s);
  const m = await client.messages.create(
    { model: "test-model", max_tokens: 5, messages: HELLO, ignore_eos: true } as
      & Anthropic.MessageCreateParamsNonStreaming
      & Extra,
    { headers: { "X-Request-Id": "abc" } },
  );
  assert.equal(m.id, "msg_abc");
  assert.equal(m.type, "message");
  assert.equal(m.role, "assistant");
  assert.equal(m.model, "test-model");
  assert.equal(m.content.length, 1);
  const block = m.content[0];
  assert.equal(block.type, "text");
  assert.ok(block.type === "text" && block.text.length > 0);
  assert.equal(m.stop_reason, "max_tokens");
  assert.equal(m.stop_sequence, null);
  assert.ok(m.usage.input_tokens > 0);
  assert.equal(m.usage.output_tokens, 5);
  assert.equal(m.usage.cache_creation_input_tokens, 0);
  assert.equal(m.usage.cache_read_input_tokens, 0);
});

Deno.test("messages: a short answer ends its turn; echo mode answers the last user text", async () => {
  await using s = await startSim(["--mode", "echo"]);
  const m = await anthropic(s).messages.create({
    model: "test-model",
    max_tokens: 100,
    messages: [
      { role: "user", content: "first question" },
      { role: "assistant", content: "an answer" },
      { role: "user", content: [{ type: "text", text: "say this back" }] },
    ],
  });
  assert.deepEqual(m.content, [{ type: "text", text: "say this back" }]);
  assert.equal(m.stop_reason, "end_turn");
  assert.ok(m.usage.output_tokens > 0);
});

Deno.test("messages: streaming through messages.stream() and create({stream:true})", async () => {
  await using s = await startSim(["--seed", "3"]);
  const client = anthropic(s);
  const stream = client.messages.stream(
    {
      model: "test-model",
      max_tokens: 8,
      messages: HELLO,
      ignore_eos: true,
    } as Anthropic.MessageStreamParams & Extra,
  );
  const types: string[] = [];
  let text = "";
  stream.on("streamEvent", (e) => types.push(e.type));
  stream.on("text", (t) => (text += t));
  const final = await stream.finalMessage();
  assert.deepEqual(types, [
    "message_start",
    "content_block_start",
    ...Array(8).fill("content_block_delta"),
    "content_block_stop",
    "message_delta",
    "message_stop",
  ]);
  assert.match(final.id, /^msg_/);
  assert.equal(final.content.length, 1);
  assert.deepEqual(final.content[0], { type: "text", text });
  assert.ok(text.length > 0);
  assert.equal(final.stop_reason, "max_tokens");
  assert.equal(final.usage.output_tokens, 8);
  assert.ok(final.usage.input_tokens > 0);

  const events = await client.messages.create(
    {
      model: "test-model",
      max_tokens: 4,
      messages: HELLO,
      stream: true,
      ignore_eos: true,
    } as Anthropic.MessageCreateParamsStreaming & Extra,
  );
  const seen: string[] = [];
  let deltas = "";
  for await (const e of events) {
    seen.push(e.type);
    if (e.type === "content_block_delta" && e.delta.type === "text_delta") deltas += e.delta.text;
    if (e.type === "message_delta") {
      assert.equal(e.delta.stop_reason, "max_tokens");
      assert.equal(e.usage.output_tokens, 4);
    }
  }
  assert.equal(seen[0], "message_start");
  assert.equal(seen.at(-1), "message_stop");
  assert.equal(seen.filter((t) => t === "content_block_delta").length, 4);
  assert.ok(deltas.length > 0);
});

Deno.test("messages: the exact SSE bytes of one request", async () => {
  await using s = await startSim(["--seed", "7"]);
  const res = await s.post("/v1/messages", {
    model: "test-model",
    max_tokens: 3,
    stream: true,
    messages: HELLO,
  }, { "X-Request-Id": "fixed" });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
  // messages.md "Streaming", in its key order.
  const ev = (name: string, data: unknown) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
  const delta = (text: string) =>
    ev("content_block_delta", {
      type: "content_block_delta",
      index: 0,
      delta: { type: "text_delta", text },
    });
  const expected = ev("message_start", {
    type: "message_start",
    message: {
      id: "msg_fixed",
      type: "message",
      role: "assistant",
      content: [],
      model: "test-model",
      stop_reason: null,
      stop_sequence: null,
      usage: {
        input_tokens: 6,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
        output_tokens: 0,
      },
    },
  }) +
    ev("content_block_start", {
      type: "content_block_start",
      index: 0,
      content_block: { type: "text" },
    }) +
    ev("ping", { type: "ping" }) +
    delta("He ") + delta("painted ") + delta("the ") +
    ev("content_block_stop", { type: "content_block_stop", index: 0 }) +
    ev("message_delta", {
      type: "message_delta",
      delta: { stop_reason: "max_tokens", stop_sequence: null },
      usage: { output_tokens: 3 },
    }) +
    ev("message_stop", { type: "message_stop" });
  assert.equal(await res.text(), expected);
});

Deno.test("messages: the exact non-streaming body", async () => {
  await using s = await startSim(["--seed", "7"]);
  const res = await s.post("/v1/messages", {
    model: "test-model",
    max_tokens: 3,
    messages: HELLO,
  }, { "X-Request-Id": "fixed" });
  assert.equal(res.status, 200);
  assert.equal(
    await res.text(),
    `{"id":"msg_fixed","type":"message","role":"assistant","content":[{"type":"text",` +
      `"text":"He painted the "}],"model":"test-model","stop_reason":"max_tokens",` +
      `"stop_sequence":null,` +
      `"usage":{"input_tokens":6,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,` +
      `"output_tokens":3}}`,
  );
});

Deno.test("messages: a zero-token cache_threshold answer is well formed", async () => {
  await using s = await startSim();
  const client = anthropic(s);
  const headers = { "X-Cache-Threshold-Finish-Reason": "true" };
  const stream = client.messages.stream(
    { model: "test-model", max_tokens: 10, messages: HELLO },
    { headers },
  );
  const types: string[] = [];
  stream.on("streamEvent", (e) => types.push(e.type));
  const final = await stream.finalMessage();
  assert.deepEqual(types, [
    "message_start",
    "content_block_start",
    "content_block_stop",
    "message_delta",
    "message_stop",
  ]);
  assert.equal(final.stop_reason, "max_tokens");
  assert.equal(final.usage.output_tokens, 0);
  assert.ok(final.usage.input_tokens > 0);
  assert.equal(final.content.length, 1);
  assert.equal(final.content[0].type, "text");

  const m = await client.messages.create(
    { model: "test-model", max_tokens: 10, messages: HELLO },
    { headers },
  );
  assert.equal(m.stop_reason, "max_tokens");
  assert.equal(m.usage.output_tokens, 0);
  assert.equal(m.content[0].type, "text");
});

Deno.test("messages: system as a string or as text blocks joined by newlines", async () => {
  await using s = await startSim();
  const client = anthropic(s);
  const ask = (system?: string | Anthropic.TextBlockParam[]) =>
    client.messages.create({ model: "test-model", max_tokens: 1, messages: HELLO, system });
  const none = await ask();
  const str = await ask("Be brief.\nBe kind.");
  const blocks = await ask([{ type: "text", text: "Be brief." }, {
    type: "text",
    text: "Be kind.",
  }]);
  assert.ok(str.usage.input_tokens > none.usage.input_tokens);
  assert.equal(blocks.usage.input_tokens, str.usage.input_tokens);
  assert.equal((await ask("")).usage.input_tokens, none.usage.input_tokens);
});

Deno.test("messages: typed SDK errors", async () => {
  await using s = await startSim();
  const client = anthropic(s);
  const missing = {
    model: "test-model",
    messages: HELLO,
  } as unknown as Anthropic.MessageCreateParamsNonStreaming;
  await assert.rejects(client.messages.create(missing), (e) => {
    assert.ok(e instanceof Anthropic.BadRequestError);
    assert.equal(e.status, 400);
    assert.deepEqual(e.error, {
      type: "error",
      error: { type: "invalid_request_error", message: "max_tokens is required" },
    });
    return true;
  });
  await assert.rejects(
    client.messages.create({ model: "test-model", max_tokens: 5, messages: [] }),
    Anthropic.BadRequestError,
  );
  await assert.rejects(
    client.messages.create({ model: "no-such-model", max_tokens: 5, messages: HELLO }),
    (e) => {
      assert.ok(e instanceof Anthropic.NotFoundError);
      assert.equal((e.error as { error: { type: string } }).error.type, "not_found_error");
      return true;
    },
  );
  await assert.rejects(
    client.messages.create(
      { model: "test-model", max_tokens: 5, messages: HELLO },
      { headers: { "X-Return-Error": "429" } },
    ),
    (e) => {
      assert.ok(e instanceof Anthropic.RateLimitError);
      assert.equal((e.error as { error: { type: string } }).error.type, "rate_limit_error");
      return true;
    },
  );
});

Deno.test("messages: --api-key takes x-api-key or a Bearer token", async () => {
  await using s = await startSim(["--api-key", "secret"]);
  const body = { model: "test-model", max_tokens: 2, messages: HELLO };
  await assert.rejects(anthropic(s, "wrong").messages.create(body), (e) => {
    assert.ok(e instanceof Anthropic.AuthenticationError);
    assert.equal((e.error as { error: { type: string } }).error.type, "authentication_error");
    return true;
  });
  const m = await anthropic(s, "secret").messages.create(body);
  assert.equal(m.type, "message");
  const bearer = await s.post("/v1/messages", body, { authorization: "Bearer secret" });
  assert.equal(bearer.status, 200);
  await bearer.body?.cancel();
  const none = await s.post("/v1/messages", body);
  assert.equal(none.status, 401);
  assert.deepEqual(await none.json(), {
    type: "error",
    error: { type: "authentication_error", message: "Unauthorized" },
  });
});

Deno.test("messages: bad input is a 400 in Anthropic's error shape", async () => {
  await using s = await startSim();
  const ok = { model: "test-model", max_tokens: 5, messages: HELLO };
  const cases: [string, unknown][] = [
    ["not JSON", "{nope"],
    ["not an object", [1, 2]],
    ["no model", { ...ok, model: undefined }],
    ["no max_tokens", { ...ok, max_tokens: undefined }],
    ["max_tokens 0", { ...ok, max_tokens: 0 }],
    ["max_tokens a string", { ...ok, max_tokens: "5" }],
    ["no messages", { ...ok, messages: undefined }],
    ["messages not an array", { ...ok, messages: { role: "user", content: "hi" } }],
    ["empty messages", { ...ok, messages: [] }],
    ["only empty content", { ...ok, messages: [{ role: "user", content: "" }] }],
    ["message not an object", { ...ok, messages: ["hi"] }],
    ["role missing", { ...ok, messages: [{ content: "hi" }] }],
    ["content a number", { ...ok, messages: [{ role: "user", content: 5 }] }],
    ["content missing", { ...ok, messages: [{ role: "user" }] }],
    ["block without type", { ...ok, messages: [{ role: "user", content: [{ text: "x" }] }] }],
    ["block not an object", { ...ok, messages: [{ role: "user", content: ["x"] }] }],
    ["text not a string", {
      ...ok,
      messages: [{ role: "user", content: [{ type: "text", text: 1 }] }],
    }],
    ["image without source", {
      ...ok,
      messages: [{ role: "user", content: [{ type: "image" }] }],
    }],
    ["tool_use input not an object", {
      ...ok,
      messages: [{
        role: "assistant",
        content: [{ type: "tool_use", id: "t", name: "f", input: 3 }],
      }],
    }],
    ["tool_result content a number", {
      ...ok,
      messages: [{
        role: "user",
        content: [{ type: "tool_result", tool_use_id: "t", content: 3 }],
      }],
    }],
    ["system a number", { ...ok, system: 3 }],
    ["system block without type", { ...ok, system: [{ text: "x" }] }],
    ["tools not an array", { ...ok, tools: {} }],
    ["tool without name", { ...ok, tools: [{ input_schema: { type: "object" } }] }],
    ["tool input_schema not an object", { ...ok, tools: [{ name: "f", input_schema: "x" }] }],
    ["tool_choice not an object", { ...ok, tool_choice: "auto" }],
    ["tool_choice tool without name", { ...ok, tool_choice: { type: "tool" } }],
    ["stream not a boolean", { ...ok, stream: "yes" }],
  ];
  for (const [what, body] of cases) {
    const res = await s.post("/v1/messages", body);
    assert.equal(res.status, 400, what);
    const j = await res.json();
    assert.deepEqual(Object.keys(j), ["type", "error"], what);
    assert.equal(j.type, "error", what);
    assert.deepEqual(Object.keys(j.error), ["type", "message"], what);
    assert.equal(j.error.type, "invalid_request_error", what);
    assert.equal(typeof j.error.message, "string", what);
  }
  const r = await s.post("/v1/messages", { ...ok, tool_choice: { type: "tool" } });
  assert.equal(
    (await r.json()).error.message,
    "tool_choice of type 'tool' requires a non-empty 'name'",
  );
  const img = await s.post("/v1/messages", {
    ...ok,
    messages: [{ role: "user", content: [{ type: "image" }] }],
  });
  assert.equal(
    (await img.json()).error.message,
    "image content block is missing required 'source' field",
  );
});

Deno.test("messages: tools, tool_choice, tool blocks and images are accepted; none answers text, any and tool call", async () => {
  await using s = await startSim();
  const client = anthropic(s);
  const tools: Anthropic.Tool[] = [{
    name: "get_weather",
    description: "Weather in a city",
    input_schema: { type: "object", properties: { city: { type: "string" } } },
  }];
  const choices: Anthropic.ToolChoice[] = [
    { type: "auto" },
    { type: "any" },
    { type: "none" },
    { type: "tool", name: "get_weather" },
  ];
  for (const tool_choice of choices) {
    const m = await client.messages.create({
      model: "test-model",
      max_tokens: 4,
      tools,
      tool_choice,
      messages: [
        { role: "user", content: "Weather in Boston?" },
        {
          role: "assistant",
          content: [
            { type: "thinking", thinking: "hmm", signature: "sig" },
            { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Boston" } },
          ],
        },
        {
          role: "user",
          content: [
            { type: "tool_result", tool_use_id: "toolu_1", content: "sunny" },
            {
              type: "image",
              source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" },
            },
            { type: "image", source: { type: "url", url: "https://example.com/a.png" } },
            { type: "text", text: "And tomorrow?" },
          ],
        },
      ],
    });
    const called = m.content[0].type === "tool_use";
    assert.equal(called, m.stop_reason === "tool_use", JSON.stringify(m));
    if (tool_choice.type === "none") assert.equal(called, false, "none: a text answer");
    if (tool_choice.type === "any" || tool_choice.type === "tool") {
      assert.ok(called, `${tool_choice.type}: at least one tool_use block`);
    }
  }
});

Deno.test("messages: request conversion to chat messages", () => {
  const req = parseMessagesRequest({
    model: "m",
    max_tokens: 7,
    system: [{ type: "text", text: "one" }, { type: "text", text: "two" }],
    temperature: 0.5,
    stop_sequences: ["x"],
    metadata: { user_id: "u" },
    tools: [{ name: "f", input_schema: { type: "object", properties: {} } }, {
      name: "g",
      description: "G",
    }],
    tool_choice: { type: "tool", name: "f" },
    messages: [
      { role: "user", content: "hi" },
      {
        role: "assistant",
        content: [
          { type: "text", text: "calling" },
          { type: "tool_use", id: "toolu_a", name: "f", input: { a: 1 } },
          { type: "tool_use", id: "toolu_b", name: "g" },
        ],
      },
      {
        role: "user",
        content: [
          { type: "tool_result", tool_use_id: "toolu_a", content: "r1" },
          {
            type: "tool_result",
            tool_use_id: "toolu_b",
            content: [{ type: "text", text: "x" }, { type: "image", source: {} }, {
              type: "text",
              text: "y",
            }],
          },
          { type: "document", source: {} },
        ],
      },
      { role: "user", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] },
      {
        role: "user",
        content: [{ type: "image", source: { type: "url", url: "u" } }],
      },
      { role: "user", content: [{ type: "thinking", thinking: "t" }] },
    ],
  });
  assert.equal(req.maxTokens, 7);
  assert.equal(req.n, 1);
  assert.equal(req.stream, false);
  assert.deepEqual(req.messages, [
    { role: "system", content: "one\ntwo", text: "one\ntwo" },
    { role: "user", content: "hi", text: "hi" },
    {
      role: "assistant",
      content: "calling",
      text: "calling",
      toolCalls: [
        { id: "toolu_a", name: "f", arguments: `{"a":1}` },
        { id: "toolu_b", name: "g", arguments: "{}" },
      ],
    },
    { role: "tool", content: "r1", text: "r1", toolCallId: "toolu_a" },
    { role: "tool", content: "x\ny", text: "x\ny", toolCallId: "toolu_b" },
    // Parts join with a newline; an image is an image_url part, shown as `image: <url>`.
    { role: "user", content: "a\nb", text: "a\nb" },
    { role: "user", content: "image: u", text: "", media: [{ modality: "image", source: "u" }] },
  ]);
  assert.deepEqual(req.toolDefs, [
    { name: "f", description: "", parameters: { type: "object", properties: {} } },
    { name: "g", description: "G", parameters: null },
  ]);
  assert.deepEqual(req.tools?.choice, { name: "f" });
  const choice = (tool_choice: unknown) =>
    parseMessagesRequest({
      model: "m",
      max_tokens: 1,
      messages: [{ role: "user", content: "x" }],
      tools: [{ name: "f", input_schema: { type: "object", properties: {} } }],
      tool_choice,
    })
      .tools?.choice ?? "none";
  assert.equal(choice(undefined), "auto");
  assert.equal(choice({ type: "auto" }), "auto");
  assert.equal(choice({ type: "any" }), "required");
  assert.equal(choice({ type: "none" }), "none");
});

Deno.test("messages: headers at once, message_start only after the time to first token", async () => {
  await using s = await startSim(["--time-to-first-token", "300ms"]);
  const t0 = performance.now();
  const res = await s.post("/v1/messages", {
    model: "test-model",
    max_tokens: 2,
    stream: true,
    messages: HELLO,
  });
  const headersAt = performance.now() - t0;
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  const first = await reader.read();
  const firstAt = performance.now() - t0;
  const text = new TextDecoder().decode(first.value);
  assert.ok(text.startsWith("event: message_start\n"), text);
  assert.ok(headersAt < 250, `headers after ${headersAt} ms`);
  assert.ok(firstAt >= 250, `message_start after ${firstAt} ms`);
  await reader.cancel();
});
