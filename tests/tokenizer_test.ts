/**
 * The tokenizers through the server: a real model's tokenizer.json in-process
 * (ids against an independent BPE, chat counts against the template's
 * rendering, unicode through echo and streams), the Hugging Face cache and a
 * download from a fake hub (a failure midway leaves no file), the render
 * sidecar client against a fake sidecar, and start-up errors.
 */
import assert from "node:assert/strict";
import { StartupError } from "../main.ts";
import { expectError, sseEvents, startSim, type TestServer } from "./helpers.ts";
import { QWEN_FILES, QWEN_TOKENIZER_JSON, qwenTokenizerDir } from "./fixtures/qwen_tokenizer.ts";
import { ReferenceBpe } from "./fixtures/reference_bpe.ts";
import { SENTENCES } from "../lib/sentences.ts";

const ref = new ReferenceBpe(QWEN_TOKENIZER_JSON);
const QWEN = "Qwen/Qwen2.5-1.5B-Instruct";
const SYSTEM = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. " +
  "You are a helpful assistant.<|im_end|>\n";

/** Texts a tokenizer gets wrong first: accents, CJK, emoji sequences, code, whitespace runs. */
const TEXTS = [
  "Hello, world! How are you?",
  "Crème brûlée, déjà vu — naïve café",
  "日本語のテキストと中文字符",
  "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷!",
  "def f(x):\n    return x**2  \n\n\t",
  "I'm  12345 don't   stop",
];

function kindOf(s: TestServer): string {
  return s.running.ranks[0].sim.tokenizer.kind;
}

async function chatUsage(s: TestServer, messages: unknown[], extra = {}): Promise<number> {
  const r = await (await s.post("/v1/chat/completions", {
    model: s.running.ranks[0].sim.config.model,
    messages,
    max_tokens: 1,
    ...extra,
  })).json();
  return r.usage.prompt_tokens;
}

Deno.test("hf: --tokenizer DIR loads tokenizer.json; ids equal an independent BPE's", async () => {
  const dir = qwenTokenizerDir();
  await using s = await startSim(["--model", QWEN, "--tokenizer", dir]);
  assert.equal(kindOf(s), "huggingface");
  for (const text of TEXTS) {
    const body = await (await s.post("/tokenize", {
      prompt: text,
      return_token_strs: true,
    })).json();
    assert.deepEqual(body.tokens, ref.encode(text), text);
    assert.equal(body.count, body.tokens.length);
    assert.equal(body.token_strs.length, body.count);
    const back = await (await s.post("/detokenize", { tokens: body.tokens })).json();
    assert.equal(back.prompt, text.normalize("NFC"));
  }
  // The file itself works as --tokenizer too.
  await using f = await startSim(["--model", QWEN, "--tokenizer", `${dir}/tokenizer.json`]);
  assert.equal(kindOf(f), "huggingface");
  const ids = (await (await f.post("/tokenize", { prompt: TEXTS[3] })).json()).tokens;
  assert.deepEqual(ids, ref.encode(TEXTS[3]));
  // An id past the vocabulary is a 400.
  await expectError(s, "/detokenize", { tokens: [1, 10_000_000] }, 400, /10000000/);
});

Deno.test("hf: a chat prompt's count is the chat template's rendering, tools included", async () => {
  await using s = await startSim(["--model", QWEN, "--tokenizer", qwenTokenizerDir()]);
  const rendered = SYSTEM + "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n";
  const messages = [{ role: "user", content: "Hello" }];
  assert.equal(await chatUsage(s, messages), ref.encode(rendered).length);
  const tok = await (await s.post("/tokenize", { messages })).json();
  assert.deepEqual(tok.tokens, ref.encode(rendered));
  // A system message replaces the default; an assistant's tool call and the tool's answer render.
  const convo = [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Weather?" },
    {
      role: "assistant",
      content: null,
      tool_calls: [{
        id: "call_1",
        type: "function",
        function: { name: "get_weather", arguments: '{"city":"Paris"}' },
      }],
    },
    { role: "tool", tool_call_id: "call_1", content: "sunny" },
  ];
  const expected = "<|im_start|>system\nBe brief.<|im_end|>\n" +
    "<|im_start|>user\nWeather?<|im_end|>\n" +
    '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n' +
    "</tool_call><|im_end|>\n" +
    "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n" +
    "<|im_start|>assistant\n";
  assert.equal(await chatUsage(s, convo), ref.encode(expected).length);
  // Tools are given to the template, which lists them in the system prompt.
  const tools = [{
    type: "function",
    function: { name: "f", parameters: { type: "object", properties: {} } },
  }];
  assert.ok(await chatUsage(s, messages, { tools }) > ref.encode(rendered).length + 20);
  // Completions encode the prompt as the model does (Qwen adds no BOS).
  const c = await (await s.post("/v1/completions", { model: QWEN, prompt: "Hello", max_tokens: 1 }))
    .json();
  assert.equal(c.usage.prompt_tokens, ref.encode("Hello").length);
});

Deno.test("hf: unicode survives echo and streaming; no piece is broken UTF-8", async () => {
  await using s = await startSim([
    "--model",
    QWEN,
    "--tokenizer",
    qwenTokenizerDir(),
    "--mode",
    "echo",
  ]);
  for (const text of TEXTS) {
    const whole = await (await s.post("/v1/chat/completions", {
      model: QWEN,
      messages: [{ role: "user", content: text }],
    })).json();
    assert.equal(whole.choices[0].message.content, text);
    assert.equal(whole.usage.completion_tokens, ref.encode(text).length, text);
    const events = await sseEvents(
      await s.post("/v1/chat/completions", {
        model: QWEN,
        messages: [{ role: "user", content: text }],
        stream: true,
      }),
    );
    const deltas = events.filter((e) => e !== "[DONE]").map((e) =>
      JSON.parse(e).choices[0]?.delta?.content ?? ""
    );
    assert.equal(deltas.join(""), text, text);
    for (const d of deltas) assert.ok(!d.includes("\uFFFD") && d.isWellFormed(), JSON.stringify(d));
  }
});

Deno.test("hf: random answers are the model's tokens; generate's ids decode to the text", async () => {
  await using s = await startSim([
    "--model",
    QWEN,
    "--tokenizer",
    qwenTokenizerDir(),
    "--seed",
    "3",
  ]);
  const r = await (await s.post("/v1/completions", {
    model: QWEN,
    prompt: "Hi",
    max_tokens: 30,
    ignore_eos: true,
  })).json();
  assert.equal(r.usage.completion_tokens, 30);
  const g = await (await s.post("/inference/v1/generate", {
    token_ids: [1, 2],
    sampling_params: { max_tokens: 12 },
    ignore_eos: true,
  })).json();
  const ids = g.choices[0].token_ids;
  assert.equal(ids.length, 12);
  const text = (await (await s.post("/detokenize", { tokens: ids })).json()).prompt;
  // The built-in sentences, cut into the model's tokens.
  assert.ok(SENTENCES.some((x) => (x + " ").startsWith(text)), text);
});

Deno.test("selection: --force-dummy-tokenizer wins; a missing or broken file is a start-up error", async () => {
  const dir = qwenTokenizerDir();
  await using s = await startSim(["--model", QWEN, "--tokenizer", dir, "--force-dummy-tokenizer"]);
  assert.equal(kindOf(s), "built-in");
  await assert.rejects(
    () => startSim(["--tokenizer", "/nonexistent/tokenizer.json"]),
    (e: Error) => e instanceof StartupError && e.message.includes("/nonexistent/tokenizer.json"),
  );
  Deno.writeTextFileSync(`${dir}/tokenizer.json`, "{not json");
  await assert.rejects(
    () => startSim(["--tokenizer", dir]),
    (e: Error) => e instanceof StartupError && e.message.includes(`${dir}/tokenizer.json`),
  );
  Deno.writeTextFileSync(`${dir}/tokenizer.json`, '{"model": {"type": "Nope"}}');
  await assert.rejects(
    () => startSim(["--tokenizer", dir]),
    (e: Error) => e instanceof StartupError && e.message.includes("tokenizer.json"),
  );
});

// ---------------------------------------------------------------------------
// The hub: cache and download

interface FakeHub extends AsyncDisposable {
  url: string;
  requests: { path: string; auth: string | null }[];
}

const COMMIT = "0123456789abcdef0123456789abcdef01234567";

/** A hub serving `files` for every repo; `cut` makes tokenizer.json stop after that many bytes. */
function fakeHub(files: Record<string, string>, opts: { cut?: number; status?: number } = {}) {
  const requests: FakeHub["requests"] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    requests.push({ path, auth: req.headers.get("authorization") });
    if (opts.status) return new Response("no", { status: opts.status });
    const name = path.split("/").pop()!;
    const text = files[name];
    if (text === undefined) return new Response("Entry not found", { status: 404 });
    const bytes = new TextEncoder().encode(text);
    const headers = { "x-repo-commit": COMMIT, "content-length": String(bytes.length) };
    if (opts.cut !== undefined && name === "tokenizer.json") {
      // Headers promise the whole file; the connection ends partway.
      const body = new ReadableStream({
        start(c) {
          c.enqueue(bytes.subarray(0, opts.cut));
          setTimeout(() => c.close(), 20);
        },
      });
      return new Response(body, { headers });
    }
    return new Response(bytes, { headers });
  });
  const hub: FakeHub = {
    url: `http://127.0.0.1:${server.addr.port}`,
    requests,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
  return hub;
}

/** Every file under `dir`, relative. */
function filesUnder(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  try {
    for (const e of Deno.readDirSync(dir)) {
      if (e.isDirectory) out.push(...filesUnder(`${dir}/${e.name}`, `${prefix}${e.name}/`));
      else out.push(prefix + e.name);
    }
  } catch { /* no directory */ }
  return out.sort();
}

Deno.test("hub: downloads into the cache (HF_TOKEN as bearer), then starts from the cache", async () => {
  const cache = Deno.makeTempDirSync();
  {
    await using hub = fakeHub(QWEN_FILES);
    const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_TOKEN: "hf_secret" };
    await using s = await startSim(["--model", QWEN], env);
    assert.equal(kindOf(s), "huggingface");
    assert.equal(
      await chatUsage(s, [{ role: "user", content: "Hello" }]),
      ref.encode(
        SYSTEM + "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
      ).length,
    );
    assert.deepEqual(hub.requests.map((r) => r.path), [
      `/${QWEN}/resolve/main/tokenizer.json`,
      `/${QWEN}/resolve/main/tokenizer_config.json`,
      `/${QWEN}/resolve/main/special_tokens_map.json`,
      `/${QWEN}/resolve/main/chat_template.jinja`,
    ]);
    assert.ok(hub.requests.every((r) => r.auth === "Bearer hf_secret"));
  }
  const repo = "models--Qwen--Qwen2.5-1.5B-Instruct";
  assert.deepEqual(filesUnder(cache), [
    `${repo}/refs/main`,
    `${repo}/snapshots/${COMMIT}/tokenizer.json`,
    `${repo}/snapshots/${COMMIT}/tokenizer_config.json`,
  ]);
  assert.equal(Deno.readTextFileSync(`${cache}/${repo}/refs/main`), COMMIT);
  // The hub is gone: the cache alone serves, also through HF_HOME's layout.
  await using again = await startSim(["--model", QWEN], { HF_HUB_CACHE: cache });
  assert.equal(kindOf(again), "huggingface");
  const home = Deno.makeTempDirSync();
  Deno.renameSync(cache, `${home}/hub`);
  await using viaHome = await startSim(["--model", QWEN], { HF_HOME: home, HF_HUB_OFFLINE: "1" });
  assert.equal(kindOf(viaHome), "huggingface");
});

Deno.test("hub: a download that fails midway leaves no file; refusals fall back to built-in", async () => {
  const cache = Deno.makeTempDirSync();
  {
    await using hub = fakeHub(QWEN_FILES, { cut: 100_000 });
    await using s = await startSim(["--model", QWEN], {
      HF_ENDPOINT: hub.url,
      HF_HUB_CACHE: cache,
    });
    assert.equal(kindOf(s), "built-in");
  }
  // Not even the ref: nothing points at an incomplete snapshot.
  assert.deepEqual(filesUnder(cache), []);
  for (const status of [401, 403, 404]) {
    await using hub = fakeHub(QWEN_FILES, { status });
    await using s = await startSim(["--model", QWEN], {
      HF_ENDPOINT: hub.url,
      HF_HUB_CACHE: cache,
    });
    assert.equal(kindOf(s), "built-in", String(status));
  }
  // A hub nobody listens on.
  await using s = await startSim(["--model", QWEN], {
    HF_ENDPOINT: "http://127.0.0.1:9",
    HF_HUB_CACHE: cache,
  });
  assert.equal(kindOf(s), "built-in");
});

// ---------------------------------------------------------------------------
// The render sidecar

function fakeSidecar(handler: (path: string, body: Record<string, unknown>) => Response) {
  const seen: { path: string; body: Record<string, unknown>; type: string | null }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    const body = await req.json();
    seen.push({ path, body, type: req.headers.get("content-type") });
    return handler(path, body);
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/`,
    seen,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

const FEATURES = {
  mm_hashes: { image: ["abc"] },
  mm_placeholders: { image: [{ offset: 0, length: 2 }] },
};

Deno.test("sidecar: --render-url tokenizes over HTTP; token strings padded; features passed", async () => {
  await using side = fakeSidecar((path) =>
    path === "/v1/completions/render"
      ? Response.json([{ token_ids: [11, 12, 13] }])
      : Response.json({ token_ids: [21, 22, 23, 24, 25], features: FEATURES })
  );
  await using s = await startSim(["--model", "m", "--render-url", side.url]);
  assert.equal(kindOf(s), "render");
  const t = await (await s.post("/tokenize", { prompt: "Hello world", return_token_strs: true }))
    .json();
  assert.deepEqual(t.tokens, [11, 12, 13]);
  assert.deepEqual(t.token_strs, ["Hello ", "world", ""]);
  assert.deepEqual(side.seen[0], {
    path: "/v1/completions/render",
    body: { model: "m", prompt: "Hello world" },
    type: "application/json",
  });
  const messages = [{ role: "user", content: "Hi there" }];
  assert.equal(await chatUsage(s, messages), 5);
  assert.deepEqual(side.seen.at(-1)!.body, { model: "m", messages });
  const render = await (await s.post("/v1/chat/completions/render", {
    messages: [{
      role: "user",
      content: [{ type: "text", text: "see" }, { type: "image_url", image_url: { url: "u" } }],
    }],
  })).json();
  assert.deepEqual(render, { token_ids: [21, 22, 23, 24, 25], features: FEATURES });
  // Token strings of a chat: the plain text without separators, merged to the count.
  const chatTok = await (await s.post("/tokenize", { messages, return_token_strs: true })).json();
  assert.deepEqual(chatTok.token_strs, ["user", ": ", "Hi ", "there", ""]);
  // An empty prompt needs no call.
  const calls = side.seen.length;
  assert.equal((await (await s.post("/tokenize", { messages: [] })).json()).count, 0);
  assert.equal(side.seen.length, calls);
});

Deno.test("sidecar: errors, bad bodies and timeouts are the reference's 500", async () => {
  let mode = "error";
  await using side = fakeSidecar(() => {
    if (mode === "error") return new Response("boom", { status: 503 });
    if (mode === "garbage") return new Response("not json");
    if (mode === "empty") return Response.json([]);
    return new Response(new ReadableStream({ start() {} })); // never ends
  });
  await using s = await startSim([
    "--model",
    "m",
    "--render-url",
    side.url,
    "--render-timeout",
    "300ms",
  ]);
  for (mode of ["error", "garbage", "empty", "hang"]) {
    await expectError(
      s,
      "/v1/chat/completions",
      {
        model: "m",
        messages: [{ role: "user", content: "x" }],
      },
      500,
      /^Failed to tokenize, /,
    );
    await expectError(s, "/tokenize", { prompt: "x" }, 500, /^Failed to tokenize, /);
  }
  // The server is still well.
  assert.equal((await fetch(`${s.url}/health`)).status, 200);
});

Deno.test("hf: long prompts are encoded off the event loop, with the same ids", async () => {
  await using s = await startSim([
    "--model",
    QWEN,
    "--tokenizer",
    qwenTokenizerDir(),
    "--max-model-len",
    "100000",
  ]);
  // Past the offload threshold: the worker's ids are the library's.
  const long = Array.from({ length: 1200 }, (_, i) => `Sentence ${i}: naïve café 😀 text.`).join(
    " ",
  );
  assert.ok(long.length > 32 * 1024);
  const tok = await (await s.post("/tokenize", { prompt: long })).json();
  assert.deepEqual(tok.tokens, ref.encode(long));
  const rendered = SYSTEM + `<|im_start|>user\n${long}<|im_end|>\n<|im_start|>assistant\n`;
  assert.equal(await chatUsage(s, [{ role: "user", content: long }]), ref.encode(rendered).length);
  // One 300 000-letter word is seconds of BPE: /health, asked after it, answers first.
  const order: string[] = [];
  const slow = s.post("/v1/completions", {
    model: QWEN,
    prompt: "a".repeat(300_000),
    max_tokens: 1,
  })
    .then(async (r) => {
      await r.body?.cancel();
      order.push("completion");
    });
  await new Promise((r) => setTimeout(r, 50));
  const health = await fetch(`${s.url}/health`);
  await health.body?.cancel();
  order.push("health");
  await slow;
  assert.deepEqual(order, ["health", "completion"]);
});

Deno.test("hf: chat_template.jinja is used when the config has none; no template → built-in chat text", async () => {
  const dir = qwenTokenizerDir();
  const config = JSON.parse(QWEN_FILES["tokenizer_config.json"]);
  delete config.chat_template;
  Deno.writeTextFileSync(`${dir}/tokenizer_config.json`, JSON.stringify(config));
  const messages = [{ role: "user", content: "Hello" }];
  {
    // No template anywhere: the built-in chat text, encoded by the model's tokenizer.
    await using s = await startSim(["--model", QWEN, "--tokenizer", dir]);
    assert.equal(await chatUsage(s, messages), ref.encode("### user: Hello\n").length);
  }
  Deno.writeTextFileSync(
    `${dir}/chat_template.jinja`,
    "{% for m in messages %}<|im_start|>{{ m.role }}: {{ m.content }}<|im_end|>{% endfor %}" +
      "{% if add_generation_prompt %}<|im_start|>assistant{% endif %}{{ eos_token }}",
  );
  await using s = await startSim(["--model", QWEN, "--tokenizer", dir]);
  assert.equal(
    await chatUsage(s, messages),
    ref.encode("<|im_start|>user: Hello<|im_end|><|im_start|>assistant<|im_end|>").length,
  );
  // A template that refuses the conversation is the client's 400.
  Deno.writeTextFileSync(
    `${dir}/chat_template.jinja`,
    "{{ raise_exception('roles must alternate') }}",
  );
  await using bad = await startSim(["--model", QWEN, "--tokenizer", dir]);
  await expectError(
    bad,
    "/v1/chat/completions",
    { model: QWEN, messages },
    400,
    /roles must alternate/,
  );
});
