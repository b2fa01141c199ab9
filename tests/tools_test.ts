/**
 * Tool calls through real clients (tools-and-logprobs.md): the openai SDK on
 * chat completions and Responses, the Anthropic SDK on Messages, and the
 * Vercel AI SDK completing a tool round trip.
 */
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";
import { Ajv } from "ajv";
import type OpenAI from "openai";
import { startSim, type TestServer } from "./helpers.ts";

const WEATHER: OpenAI.ChatCompletionFunctionTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Weather in a city",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", minLength: 2 },
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
        days: { type: "integer", minimum: 1, maximum: 7 },
      },
      required: ["city", "days"],
    },
  },
};

const ORDER: OpenAI.ChatCompletionFunctionTool = {
  type: "function",
  function: {
    name: "place_order",
    description: "Orders items",
    parameters: {
      type: "object",
      properties: {
        items: {
          type: "array",
          minItems: 1,
          maxItems: 3,
          items: {
            type: "object",
            properties: {
              sku: { type: "string", enum: ["A1", "B2"] },
              qty: { type: "integer", minimum: 1, maximum: 5 },
            },
            required: ["sku", "qty"],
          },
        },
        express: { type: "boolean" },
        note: { type: "string", maxLength: 8 },
        address: {
          type: "object",
          properties: { zip: { type: "string" }, floor: { type: "integer", minimum: -2 } },
          required: ["zip"],
        },
      },
      required: ["items", "address"],
    },
  },
};

const TOOLS = [WEATHER, ORDER];
const USER: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "Weather in Paris?" }];
const ajv = new Ajv({ strict: false });
const VALIDATORS = new Map(
  TOOLS.map((t) => [t.function.name, ajv.compile(t.function.parameters!)]),
);

/** The call's arguments parse and validate against its tool's schema. */
function checkCall(name: string, args: string): void {
  const validate = VALIDATORS.get(name);
  assert.ok(validate, `unknown tool ${name}`);
  const value = JSON.parse(args);
  assert.ok(validate(value), `${name}(${args}): ${ajv.errorsText(validate.errors)}`);
}

async function tokenCount(s: TestServer, text: string): Promise<number> {
  const r = await (await s.post("/tokenize", { model: "test-model", prompt: text })).json();
  return r.count;
}

Deno.test("chat tools (openai): required calls validate, ids and usage as the reference", async () => {
  await using s = await startSim();
  let calls = 0;
  for (let seed = 0; seed < 40; seed++) {
    const r = await s.client.chat.completions.create({
      model: "test-model",
      messages: USER,
      tools: TOOLS,
      tool_choice: "required",
      seed,
    });
    const choice = r.choices[0];
    assert.equal(choice.finish_reason, "tool_calls");
    assert.equal(choice.logprobs, null);
    const msg = choice.message;
    assert.equal("content" in msg, false, "a tool answer leaves content out");
    assert.ok(msg.tool_calls && msg.tool_calls.length >= 1);
    let tokens = 0;
    for (const [i, call] of msg.tool_calls.entries()) {
      assert.equal(call.type, "function");
      if (call.type !== "function") continue;
      assert.match(call.id, /^chatcmpl-tool-\d{10}$/);
      assert.equal((call as unknown as { index: number }).index, i);
      checkCall(call.function.name, call.function.arguments);
      tokens += 3 + await tokenCount(s, call.function.arguments);
      calls++;
    }
    assert.equal(r.usage?.completion_tokens, tokens, "Σ (3 + argument tokens)");
  }
  assert.ok(calls >= 40);
});

Deno.test("chat tools (openai): none, auto, forced; the extra-call flag", async () => {
  await using s = await startSim(["--tool-call-extra-call-probability", "0"]);
  const ask = (tool_choice: OpenAI.ChatCompletionToolChoiceOption) =>
    s.client.chat.completions.create({
      model: "test-model",
      messages: USER,
      tools: TOOLS,
      tool_choice,
    });
  const none = await ask("none");
  assert.equal(none.choices[0].message.tool_calls?.length ?? 0, 0);
  assert.notEqual(none.choices[0].finish_reason, "tool_calls");
  // auto: the minimum is 0 and no extra call is ever rolled.
  const auto = await ask("auto");
  assert.equal(auto.choices[0].message.tool_calls?.length ?? 0, 0);
  for (let i = 0; i < 10; i++) {
    const forced = await ask({ type: "function", function: { name: "place_order" } });
    const calls = forced.choices[0].message.tool_calls!;
    assert.equal(calls.length, 1, "a forced function: exactly one call");
    assert.equal(calls[0].type === "function" && calls[0].function.name, "place_order");
  }
  // The flat form of a forced function (Responses' shape) is accepted on chat too.
  const flat = await s.post("/v1/chat/completions", {
    model: "test-model",
    messages: USER,
    tools: TOOLS,
    tool_choice: { type: "function", name: "get_weather" },
  });
  assert.equal((await flat.json()).choices[0].message.tool_calls[0].function.name, "get_weather");
  // n choices: each draws its own calls.
  const three = await s.client.chat.completions.create({
    model: "test-model",
    messages: USER,
    tools: TOOLS,
    tool_choice: "required",
    n: 3,
  });
  assert.equal(three.choices.length, 3);
  const ids = three.choices.map((c) => c.message.tool_calls![0].id);
  assert.equal(new Set(ids).size, 3);
  assert.ok(three.choices.every((c) => c.finish_reason === "tool_calls"));
  await using all = await startSim(["--tool-call-extra-call-probability", "100"]);
  const many = await all.client.chat.completions.create({
    model: "test-model",
    messages: USER,
    tools: TOOLS,
  });
  assert.equal(many.choices[0].message.tool_calls?.length, 2, "auto at 100%: one call per tool");
});

Deno.test("chat tools (openai): a stream reassembles to the complete answer's calls", async () => {
  await using s = await startSim(["--tool-call-extra-call-probability", "80"]);
  for (const seed of [1, 2, 3, 4]) {
    const body = {
      model: "test-model",
      messages: USER,
      tools: TOOLS,
      tool_choice: "required" as const,
      seed,
    };
    const whole = await s.client.chat.completions.create(body);
    const stream = await s.client.chat.completions.create({
      ...body,
      stream: true,
      stream_options: { include_usage: true },
    });
    const calls: { id: string; name: string; args: string; finished: boolean }[] = [];
    let roleChunks = 0;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      const c = chunk.choices[0];
      if (!c) continue;
      if (c.delta.role) roleChunks++;
      for (const d of c.delta.tool_calls ?? []) {
        const call = calls[d.index] ??= { id: d.id!, name: "", args: "", finished: false };
        assert.equal(d.id, call.id, "the id on every piece");
        assert.equal(call.finished, false, "no piece after the call's finish");
        if (d.function?.name) {
          assert.equal(call.args, "", "the name only on the first piece");
          call.name = d.function.name;
        }
        call.args += d.function?.arguments ?? "";
        if (c.finish_reason) {
          assert.equal(c.finish_reason, "tool_calls");
          call.finished = true;
        }
      }
    }
    assert.equal(roleChunks, 1);
    const expected = whole.choices[0].message.tool_calls!.map((c) =>
      c.type === "function" ? { id: c.id, name: c.function.name, args: c.function.arguments } : null
    );
    assert.deepEqual(calls.map(({ id, name, args }) => ({ id, name, args })), expected);
    assert.ok(calls.every((c) => c.finished), "finish_reason on the last piece of every call");
    assert.equal(usage?.completion_tokens, whole.usage?.completion_tokens);
  }
});

Deno.test("chat tools: tool-call turns in the input are accepted and counted", async () => {
  await using s = await startSim();
  const base = await s.client.chat.completions.create({
    model: "test-model",
    messages: USER,
    tools: TOOLS,
    tool_choice: "none",
  });
  const turn = await s.client.chat.completions.create({
    model: "test-model",
    messages: [
      ...USER,
      {
        role: "assistant",
        tool_calls: [{
          id: "call_1",
          type: "function",
          function: { name: "get_weather", arguments: '{"city":"Paris","days":1}' },
        }],
      },
      { role: "tool", tool_call_id: "call_1", content: "sunny" },
    ],
    tools: TOOLS,
    tool_choice: "none",
  });
  assert.ok(turn.usage!.prompt_tokens > base.usage!.prompt_tokens);
});

Deno.test("chat tools: bad definitions and tool_choice values are 400s", async () => {
  await using s = await startSim();
  const cases: [string, Record<string, unknown>, RegExp][] = [
    [
      "no parameters",
      { tools: [{ type: "function", function: { name: "f" } }] },
      /^Tool validation failed: .*parameters/,
    ],
    [
      "an unknown type",
      { tools: [{ type: "function", function: { name: "f", parameters: { type: "date" } } }] },
      /^Tool validation failed: /,
    ],
    [
      "an object without properties",
      { tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }] },
      /^Tool validation failed: .*properties/,
    ],
    [
      "an enum on an object",
      {
        tools: [{
          type: "function",
          function: {
            name: "f",
            parameters: { type: "object", properties: {}, enum: [1] },
          },
        }],
      },
      /^Tool validation failed: /,
    ],
    [
      "a keyword outside the list",
      {
        tools: [{
          type: "function",
          function: {
            name: "f",
            parameters: { type: "object", properties: { a: { type: "string", oneOf: [] } } },
          },
        }],
      },
      /^Tool validation failed: /,
    ],
    [
      "enum items of another type",
      {
        tools: [{
          type: "function",
          function: {
            name: "f",
            parameters: {
              type: "object",
              properties: { a: { type: "integer", enum: ["x"] } },
            },
          },
        }],
      },
      /^Tool validation failed: /,
    ],
    [
      "a forced function not in the list",
      { tools: TOOLS, tool_choice: { type: "function", function: { name: "nope" } } },
      /^failed to create response for chat completion request \(req id [^)]+\) tool with name 'nope' requested in tool_choice but not found in the tools list$/,
    ],
    ["empty tools", { tools: [] }, /no tools available to create tool calls$/],
    [
      "a function without a name",
      { tools: TOOLS, tool_choice: { type: "function" } },
      /^Failed to read and parse request body, tool_choice function requires a name$/,
    ],
    [
      "an unknown tool_choice type",
      { tools: TOOLS, tool_choice: { type: "magic" } },
      /^Failed to read and parse request body, unknown ToolChoice type: magic$/,
    ],
    [
      "a schema no value satisfies",
      {
        tools: [{
          type: "function",
          function: {
            name: "f",
            parameters: {
              type: "object",
              properties: {
                a: { type: "array", items: { type: "string" }, minItems: 3, maxItems: 1 },
              },
              required: ["a"],
            },
          },
        }],
      },
      /minItems \(3\) is greater than maxItems\(1\)$/,
    ],
    ["tools not an array", { tools: { a: 1 } }, /'tools' must be an array/],
  ];
  for (const [what, extra, re] of cases) {
    const res = await s.post("/v1/chat/completions", {
      model: "test-model",
      messages: USER,
      ...extra,
    });
    const body = await res.json();
    assert.equal(res.status, 400, `${what}: ${JSON.stringify(body)}`);
    assert.equal(body.error.type, "BadRequestError", what);
    assert.match(body.error.message, re, what);
  }
  // tool_choice none never calls, so empty tools are fine then; other strings act as auto.
  const none = await s.post("/v1/chat/completions", {
    model: "test-model",
    messages: USER,
    tools: [],
    tool_choice: "none",
  });
  assert.equal(none.status, 200);
  // With --skip-tool-validation the definitions are not checked; arguments still generate.
  await using skip = await startSim(["--skip-tool-validation"]);
  const res = await skip.post("/v1/chat/completions", {
    model: "test-model",
    messages: USER,
    tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }],
    tool_choice: "required",
  });
  assert.equal(res.status, 200);
  const call = (await res.json()).choices[0].message.tool_calls[0];
  assert.equal(call.function.arguments, "{}");
});

Deno.test("responses tools (openai): a function call, then the answer once the output is in", async () => {
  await using s = await startSim();
  const tools: OpenAI.Responses.FunctionTool[] = [{
    type: "function",
    name: "get_weather",
    description: "Weather in a city",
    parameters: WEATHER.function.parameters!,
    strict: false,
  }];
  // tool_choice omitted: upgraded to required, so the first turn calls.
  const first = await s.client.responses.create({ model: "test-model", input: "Weather?", tools });
  assert.equal(first.output.length, 1);
  const call = first.output[0];
  assert.equal(call.type, "function_call");
  if (call.type !== "function_call") return;
  assert.match(call.id!, /^fc_\d{10}$/);
  assert.equal(call.call_id, "call_" + call.id!.slice(3));
  assert.equal(call.status, "completed");
  checkCall("get_weather", call.arguments);
  // The tool's output is in: the turn ends with a message.
  const second = await s.client.responses.create({
    model: "test-model",
    tools,
    input: [
      { role: "user", content: "Weather?" },
      call,
      { type: "function_call_output", call_id: call.call_id, output: "sunny" },
    ],
  });
  assert.equal(second.output[0].type, "message");
  assert.ok(second.output_text.length > 0);
  assert.ok(second.usage!.input_tokens > first.usage!.input_tokens);
  // Streamed: the item opens on the first argument piece; the deltas make the arguments.
  const stream = await s.client.responses.create({
    model: "test-model",
    input: "Weather?",
    tools,
    stream: true,
  });
  const types: string[] = [];
  let args = "";
  let done: OpenAI.Responses.ResponseFunctionCallArgumentsDoneEvent | undefined;
  let completed: OpenAI.Responses.Response | undefined;
  for await (const e of stream) {
    types.push(e.type);
    if (e.type === "response.function_call_arguments.delta") args += e.delta;
    if (e.type === "response.function_call_arguments.done") done = e;
    if (e.type === "response.completed") completed = e.response;
  }
  assert.deepEqual(types.filter((t) => t !== "response.function_call_arguments.delta"), [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
  ]);
  assert.equal(done?.arguments, args);
  checkCall("get_weather", args);
  const item = completed?.output[0];
  assert.equal(item?.type === "function_call" && item.arguments, args);
  // tool_choice none: a message.
  const none = await s.client.responses.create({
    model: "test-model",
    input: "Weather?",
    tools,
    tool_choice: "none",
  });
  assert.equal(none.output[0].type, "message");
});

Deno.test("messages tools (anthropic): tool_use blocks; a stream's input_json_delta builds the input", async () => {
  await using s = await startSim(["--seed", "11"]);
  await using t = await startSim(["--seed", "11"]);
  const client = (x: TestServer) => new Anthropic({ baseURL: x.url, apiKey: "x", maxRetries: 0 });
  const tools: Anthropic.Tool[] = TOOLS.map((x) => ({
    name: x.function.name,
    description: x.function.description,
    input_schema: x.function.parameters as Anthropic.Tool.InputSchema,
  }));
  const body = {
    model: "test-model",
    max_tokens: 64,
    tools,
    tool_choice: { type: "any" as const },
    messages: [{ role: "user" as const, content: "Order two A1." }],
  };
  const m = await client(s).messages.create(body);
  assert.equal(m.stop_reason, "tool_use");
  assert.ok(m.content.length >= 1);
  for (const b of m.content) {
    assert.equal(b.type, "tool_use");
    if (b.type !== "tool_use") continue;
    assert.match(b.id, /^toolu_\d{10}$/);
    checkCall(b.name, JSON.stringify(b.input));
  }
  // The same seed on a fresh server: the streamed message equals the complete one.
  const stream = client(t).messages.stream(body);
  const deltas: string[] = [];
  stream.on("inputJson", (partial) => deltas.push(partial));
  const streamed = await stream.finalMessage();
  assert.ok(deltas.length > m.content.length, "one input_json_delta per argument token");
  assert.equal(streamed.stop_reason, "tool_use");
  assert.deepEqual(
    streamed.content.map((b) => b.type === "tool_use" ? [b.id, b.name, b.input] : null),
    m.content.map((b) => b.type === "tool_use" ? [b.id, b.name, b.input] : null),
  );
  assert.equal(streamed.usage.output_tokens, m.usage.output_tokens);
  // Bad tool definitions: 400 in Anthropic's error shape.
  const bad = await s.post("/v1/messages", {
    ...body,
    tools: [{ name: "f", input_schema: { type: "object" } }],
  });
  assert.equal(bad.status, 400);
  const err = await bad.json();
  assert.equal(err.type, "error");
  assert.equal(err.error.type, "invalid_request_error");
  assert.match(err.error.message, /^Tool validation failed: /);
  const noName = await s.post("/v1/messages", { ...body, tool_choice: { type: "tool" } });
  assert.equal(noName.status, 400);
  assert.equal((await noName.json()).error.type, "invalid_request_error");
});

Deno.test("agent framework (Vercel AI SDK): a tool round trip on chat, plain and streamed", async () => {
  await using s = await startSim(["--seed", "3"]);
  const openai = createOpenAI({ baseURL: s.url + "/v1", apiKey: "x" });
  const seen: unknown[] = [];
  const tools = {
    get_weather: tool({
      description: "Weather in a city",
      inputSchema: jsonSchema<{ city: string; days: number; unit?: string }>(
        WEATHER.function.parameters as Parameters<typeof jsonSchema>[0],
      ),
      execute: (input) => {
        seen.push(input);
        return Promise.resolve({ forecast: "sunny" });
      },
    }),
  };
  const opts = {
    model: openai.chat("test-model"),
    tools,
    toolChoice: "required" as const,
    // After the tool's answer the model replies in words.
    prepareStep: ({ stepNumber }: { stepNumber: number }) =>
      stepNumber > 0 ? { toolChoice: "none" as const } : undefined,
    stopWhen: stepCountIs(3),
    prompt: "Weather in Paris?",
  };
  const r = await generateText(opts);
  assert.equal(r.steps.length, 2);
  assert.ok(r.steps[0].toolCalls.length >= 1);
  assert.equal(r.steps[0].finishReason, "tool-calls");
  assert.equal(r.steps[0].toolResults.length, r.steps[0].toolCalls.length);
  assert.equal(seen.length, r.steps[0].toolCalls.length);
  for (const input of seen) checkCall("get_weather", JSON.stringify(input));
  assert.ok(r.text.length > 0);
  const streamed = streamText(opts);
  let text = "";
  for await (const piece of streamed.textStream) text += piece;
  const steps = await streamed.steps;
  assert.equal(steps.length, 2);
  assert.ok(steps[0].toolCalls.length >= 1);
  for (const c of steps[0].toolCalls) checkCall(c.toolName, JSON.stringify(c.input));
  assert.ok(text.length > 0);
});

Deno.test("agent framework (Vercel AI SDK): a tool round trip on Responses (vLLM's format)", async () => {
  await using s = await startSim(["--use-vllm-responses-format"]);
  const openai = createOpenAI({ baseURL: s.url + "/v1", apiKey: "x" });
  const tools = {
    get_weather: tool({
      description: "Weather in a city",
      inputSchema: jsonSchema<{ city: string; days: number }>(
        WEATHER.function.parameters as Parameters<typeof jsonSchema>[0],
      ),
      execute: () => Promise.resolve({ forecast: "sunny" }),
    }),
  };
  // Responses calls on the first turn and answers once the tool's output is in.
  for (const stream of [false, true]) {
    const opts = {
      model: openai("test-model"),
      tools,
      stopWhen: stepCountIs(4),
      prompt: "Weather?",
    };
    let steps;
    if (stream) {
      const r = streamText(opts);
      for await (const _ of r.textStream) { /* drain */ }
      steps = await r.steps;
    } else steps = (await generateText(opts)).steps;
    assert.equal(steps.length, 2, `stream ${stream}`);
    assert.equal(steps[0].toolCalls.length, 1);
    checkCall("get_weather", JSON.stringify(steps[0].toolCalls[0].input));
    assert.equal(steps[0].toolResults.length, 1);
    assert.ok(steps[1].text.length > 0);
  }
});

Deno.test("hostile tool schemas: deep, huge or contradictory parameters are 400s, never 500s", async () => {
  for (const args of [[], ["--skip-tool-validation"]]) {
    await using s = await startSim(args);
    // Parameters nested 5 000 levels deep, written as text (too deep for a recursive writer).
    const deep = '{"type":"object","properties":{"a":'.repeat(5000) + '{"type":"string"}' +
      "}}".repeat(5000);
    const bodies = [
      `{"model":"test-model","messages":[{"role":"user","content":"x"}],"tool_choice":"required",` +
      `"tools":[{"type":"function","function":{"name":"f","description":"","parameters":${deep}}}]}`,
      JSON.stringify({
        model: "test-model",
        messages: USER,
        tool_choice: "required",
        tools: [{
          type: "function",
          function: {
            name: "f",
            parameters: {
              type: "object",
              properties: { s: { type: "string", minLength: 1e12 } },
              required: ["s"],
            },
          },
        }],
      }),
    ];
    for (const body of bodies) {
      const res = await s.post("/v1/chat/completions", body);
      const text = await res.text();
      assert.equal(res.status, 400, `${args}: ${text.slice(0, 200)}`);
    }
    // The simulator still answers.
    const ok = await s.client.chat.completions.create({ model: "test-model", messages: USER });
    assert.ok(ok.choices.length === 1);
  }
  // Responses: a bad definition is a 400 in the OpenAI shape.
  await using s = await startSim();
  const res = await s.post("/v1/responses", {
    model: "test-model",
    input: "hi",
    tools: [{ type: "function", name: "f", parameters: { type: "object" } }],
  });
  assert.equal(res.status, 400);
  const err = await res.json();
  assert.equal(err.error.type, "BadRequestError");
  assert.match(err.error.message, /^Tool validation failed: /);
});
