/** The official openai SDK against vllm-sim: models, chat, completions, errors. */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startSim } from "./helpers.ts";

Deno.test("models: lists served names with vLLM's fields", async () => {
  await using s = await startSim([
    "--served-model-name",
    "alpha",
    "beta",
    "--max-model-len",
    "2048",
  ]);
  const page = await s.client.models.list();
  const ids = page.data.map((m) => m.id);
  assert.deepEqual(ids, ["alpha", "beta"]);
  const m = page.data[0] as OpenAI.Models.Model & {
    root: string;
    parent: null;
    max_model_len: number;
  };
  assert.equal(m.object, "model");
  assert.equal(m.owned_by, "vllm");
  assert.equal(m.root, "test-model");
  assert.equal(m.parent, null);
  assert.equal(m.max_model_len, 2048);
});

Deno.test("chat: non-streaming answer with usage and finish_reason", async () => {
  await using s = await startSim(["--seed", "7"]);
  const r = await s.client.chat.completions.create({
    model: "test-model",
    messages: [{ role: "user", content: "Hello there" }],
    max_tokens: 12,
    ignore_eos: true,
  } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.object, "chat.completion");
  assert.equal(r.model, "test-model");
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage?.completion_tokens, 12);
  assert.ok((r.usage?.prompt_tokens ?? 0) > 0);
  assert.equal(r.usage?.total_tokens, r.usage!.prompt_tokens + 12);
  assert.ok((r.choices[0].message.content ?? "").length > 0);
});

Deno.test("chat: n choices, max_completion_tokens wins over max_tokens", async () => {
  await using s = await startSim();
  const r = await s.client.chat.completions.create({
    model: "test-model",
    messages: [{ role: "user", content: [{ type: "text", text: "parts work" }] }],
    n: 3,
    max_tokens: 50,
    max_completion_tokens: 4,
    ignore_eos: true,
  } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  assert.equal(r.usage?.completion_tokens, 12);
});

Deno.test("chat: echo mode answers with the last user message", async () => {
  await using s = await startSim(["--mode", "echo"]);
  const r = await s.client.chat.completions.create({
    model: "test-model",
    messages: [
      { role: "user", content: "first" },
      { role: "assistant", content: "ok" },
      { role: "user", content: "say exactly this" },
    ],
    max_tokens: 1,
  });
  assert.equal(r.choices[0].message.content, "say exactly this");
  assert.equal(r.choices[0].finish_reason, "stop");
  // Text parts are joined with a newline (the reference's PlainText); with no
  // user message the last message is echoed.
  const parts = await s.client.chat.completions.create({
    model: "test-model",
    messages: [{
      role: "user",
      content: [{ type: "text", text: "two" }, { type: "text", text: "parts" }],
    }],
  });
  assert.equal(parts.choices[0].message.content, "two\nparts");
  const noUser = await s.client.chat.completions.create({
    model: "test-model",
    messages: [{ role: "system", content: "only a system prompt" }],
  });
  assert.equal(noUser.choices[0].message.content, "only a system prompt");
});

Deno.test("chat: streaming with include_usage", async () => {
  await using s = await startSim();
  const stream = await s.client.chat.completions.create({
    model: "test-model",
    messages: [{ role: "user", content: "stream please" }],
    max_tokens: 8,
    ignore_eos: true,
    stream: true,
    stream_options: { include_usage: true },
  } as OpenAI.Chat.ChatCompletionCreateParamsStreaming);
  let text = "";
  let roles = 0;
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | null | undefined;
  let tokenChunks = 0;
  for await (const chunk of stream) {
    assert.equal(chunk.object, "chat.completion.chunk");
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) roles++;
      if (c.delta.content) {
        text += c.delta.content;
        tokenChunks++;
      }
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(roles, 1);
  assert.equal(tokenChunks, 8);
  assert.equal(finish, "length");
  assert.equal(usage?.completion_tokens, 8);
  assert.ok(text.length > 0);
});

Deno.test("completions: all four prompt forms", async () => {
  await using s = await startSim(["--mode", "echo"]);
  const one = await s.client.completions.create({ model: "test-model", prompt: "echo me" });
  assert.equal(one.choices[0].text, "echo me");
  assert.equal(one.object, "text_completion");
  const many = await s.client.completions.create({ model: "test-model", prompt: ["a b", "c"] });
  assert.deepEqual(many.choices.map((c) => [c.index, c.text]), [[0, "a b"], [1, "c"]]);
  const ids = await s.client.completions.create({ model: "test-model", prompt: [1, 2, 3] });
  assert.equal(ids.choices[0].text, "1,2,3");
  assert.equal(ids.usage?.prompt_tokens, 3);
  const idLists = await s.client.completions.create({
    model: "test-model",
    prompt: [[5, 6], [7]],
    n: 2,
  });
  assert.deepEqual(idLists.choices.map((c) => [c.index, c.text]), [
    [0, "5,6"],
    [1, "5,6"],
    [2, "7"],
    [3, "7"],
  ]);
  assert.equal(idLists.usage?.prompt_tokens, 3);
});

Deno.test("completions: streaming yields exactly max_tokens tokens", async () => {
  await using s = await startSim();
  const stream = await s.client.completions.create({
    model: "test-model",
    prompt: "count",
    max_tokens: 5,
    stream: true,
    ignore_eos: true,
  } as OpenAI.Completions.CompletionCreateParamsStreaming);
  const texts: string[] = [];
  let finish: string | null = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      texts.push(c.text);
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(texts.length, 5);
  assert.equal(finish, "length");
});

Deno.test("errors surface as the SDK's typed errors", async () => {
  await using s = await startSim(["--max-model-len", "50"]);
  await assert.rejects(
    () =>
      s.client.chat.completions.create({
        model: "nope",
        messages: [{ role: "user", content: "x" }],
      }),
    (e: unknown) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.equal(e.status, 404);
      assert.equal((e.error as { param?: string }).param, "model");
      return true;
    },
  );
  await assert.rejects(
    () => s.client.completions.create({ model: "test-model", prompt: "hello", max_tokens: 100 }),
    (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.match(
        e.message,
        /This model's maximum context length is 50 tokens\. However, you requested 101 tokens \(1 in the messages, 100 in the completion\)/,
      );
      assert.equal((e.error as { param?: unknown }).param, null);
      return true;
    },
  );
  // Without max_tokens the prompt alone must leave room for an answer.
  await assert.rejects(
    () => s.client.completions.create({ model: "test-model", prompt: "word ".repeat(50) }),
    (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.match(
        e.message,
        /you requested (\d+) tokens \(\1 in the messages, 0 in the completion\)/,
      );
      return true;
    },
  );
  await assert.rejects(
    () => s.client.completions.create({ model: "test-model", prompt: [] }),
    OpenAI.BadRequestError,
  );
  await assert.rejects(
    () =>
      s.client.chat.completions.create({
        model: "test-model",
        messages: [{ role: "user", content: "x" }],
        n: 0,
      }),
    OpenAI.BadRequestError,
  );
});
