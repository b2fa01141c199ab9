/** vLLM's tokenizer-side endpoints: /tokenize, /detokenize, the render endpoints, GET /query. */
import assert from "node:assert/strict";
import { synthesizeFeatures } from "../lib/api/vllm/features.ts";
import { builtinChatText as renderChat, BuiltinTokenizer } from "../lib/tokenizer/builtin.ts";
import { parseMessages } from "../lib/api/openai/protocol.ts";
import { expectError, startSim, type TestServer } from "./helpers.ts";

const builtinIds = (text: string) => new BuiltinTokenizer().encode(text).ids;
const media = (raw: unknown) => parseMessages(raw).flatMap((m) => m.media ?? []);

async function loadLora(s: TestServer, name: string): Promise<void> {
  const res = await s.post("/v1/load_lora_adapter", { lora_name: name, lora_path: "/tmp/x" });
  assert.equal(res.status, 200);
  await res.body?.cancel();
}

const IMAGE_AND_AUDIO = [
  {
    role: "user",
    content: [
      { type: "text", text: "What is this?" },
      { type: "image_url", image_url: { url: "https://example.com/cat.png" } },
    ],
  },
  {
    role: "user",
    content: [{ type: "input_audio", input_audio: { data: "UklGRg==", format: "wav" } }],
  },
];

// ---------------------------------------------------------------------------
// POST /tokenize

Deno.test("tokenize: golden bytes of a prompt with return_token_strs", async () => {
  await using s = await startSim();
  const res = await s.post("/tokenize", {
    model: "anything",
    prompt: "Hello, world!",
    return_token_strs: true,
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "application/json");
  assert.equal(
    await res.text(),
    '{"max_model_len":1024,"count":4,"tokens":[4116459851,2312110321,933488787,604802540],' +
      '"token_strs":["Hello",", ","world","!"]}',
  );
});

Deno.test("tokenize: token_strs null by default; max_model_len from the config", async () => {
  await using s = await startSim(["--max-model-len", "4096"]);
  const res = await s.post("/tokenize", { prompt: "Hello there", add_special_tokens: true });
  const body = await res.json();
  assert.deepEqual(Object.keys(body), ["max_model_len", "count", "tokens", "token_strs"]);
  assert.equal(body.max_model_len, 4096);
  assert.deepEqual(body.tokens, builtinIds("Hello there"));
  assert.equal(body.count, body.tokens.length);
  assert.equal(body.token_strs, null);
});

Deno.test("tokenize: messages are the chat rendering; none is 0 tokens", async () => {
  await using s = await startSim();
  const messages = [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello!" }];
  const chat = await (await s.post("/tokenize", { messages, return_token_strs: true })).json();
  const text = renderChat(parseMessages(messages));
  assert.deepEqual(chat.tokens, builtinIds(text));
  assert.equal(chat.count, chat.tokens.length);
  assert.equal(chat.token_strs.join(""), text);
  for (const body of [{}, { messages: [] }, { prompt: "" }, { prompt: "", messages: [] }]) {
    const r = await (await s.post("/tokenize", body)).json();
    assert.equal(r.count, 0, JSON.stringify(body));
    assert.deepEqual(r.tokens, []);
  }
});

Deno.test("tokenize: prompt and messages both → 400", async () => {
  await using s = await startSim();
  await expectError(
    s,
    "/tokenize",
    { prompt: "a", messages: [{ role: "user", content: "b" }] },
    400,
    "both prompt and messages fields in tokenize request",
  );
});

Deno.test("tokenize: a body that does not parse → 400 in the reference's words", async () => {
  await using s = await startSim();
  const prefix = /^Failed to read and parse tokenize request body, ./;
  for (const body of ['{"prompt": "x"', "[1, 2]", { prompt: 5 }, { messages: "hi" }]) {
    const e = await expectError(s, "/tokenize", body, 400, prefix);
    assert.equal(e.error.type, "BadRequestError");
  }
});

Deno.test("tokenize: X-Return-Error and the api key do not apply", async () => {
  await using s = await startSim(["--api-key", "k"]);
  const res = await s.post("/tokenize", { prompt: "ok" }, { "x-return-error": "500" });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).count, 1);
});

// ---------------------------------------------------------------------------
// POST /detokenize

Deno.test("detokenize: encode → detokenize round trip", async () => {
  await using s = await startSim();
  const text = "The quick brown fox, jumps over 12.5% of the lazy dogs!";
  const tok = await (await s.post("/tokenize", { prompt: text })).json();
  for (const model of [undefined, "test-model"]) {
    const res = await s.post("/detokenize", { model, tokens: tok.tokens });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), JSON.stringify({ prompt: text }));
  }
  const empty = await (await s.post("/detokenize", { tokens: [] })).json();
  assert.deepEqual(empty, { prompt: "" });
});

Deno.test("detokenize: a loaded adapter is a valid model, an unknown one is 404", async () => {
  await using s = await startSim();
  await loadLora(s, "my-lora");
  // The server decodes what it has encoded (its own table, not this process's).
  const ids = (await (await s.post("/tokenize", { prompt: "round trip" })).json()).tokens;
  const ok = await s.post("/detokenize", { model: "my-lora", tokens: ids });
  assert.equal(ok.status, 200);
  assert.deepEqual(await ok.json(), { prompt: "round trip" });
  const e = await expectError(
    s,
    "/detokenize",
    { model: "nope", tokens: ids },
    404,
    "The model `nope` does not exist.",
  );
  assert.equal(e.error.type, "NotFoundError");
});

Deno.test("detokenize: bad tokens and undecodable ids → 400", async () => {
  await using s = await startSim();
  await expectError(s, "/detokenize", {}, 400, "'tokens' is a required field.");
  const shape = "'tokens' must be an array of non-negative integer token ids.";
  for (const tokens of ["abc", [1, -2], [1.5], ["1"], 7]) {
    await expectError(s, "/detokenize", { tokens }, 400, shape);
  }
  const known = (await (await s.post("/tokenize", { prompt: "Hello" })).json()).tokens;
  await expectError(
    s,
    "/detokenize",
    { tokens: [...known, 7] },
    400,
    "Token id 7 is out of vocabulary.",
  );
  await expectError(s, "/detokenize", "{", 400, /^Invalid JSON/);
});

// ---------------------------------------------------------------------------
// POST /v1/completions/render

Deno.test("completions render: one token_ids per prompt, token ids copied verbatim", async () => {
  await using s = await startSim();
  const res = await s.post("/v1/completions/render", {
    model: "test-model",
    prompt: ["Hello, world!", [5, 4, 3], "Bye"],
  });
  assert.equal(res.status, 200);
  assert.equal(
    await res.text(),
    JSON.stringify([
      { token_ids: builtinIds("Hello, world!") },
      { token_ids: [5, 4, 3] },
      { token_ids: builtinIds("Bye") },
    ]),
  );
  const one = await (await s.post("/v1/completions/render", { model: "test-model", prompt: "x" }))
    .json();
  assert.deepEqual(one, [{ token_ids: builtinIds("x") }]);
  const ids = await (await s.post("/v1/completions/render", { prompt: [9, 8, 7] })).json();
  assert.deepEqual(ids, [{ token_ids: [9, 8, 7] }]);
});

Deno.test("completions render: model checked first (404 unknown, 400 LoRA)", async () => {
  await using s = await startSim();
  await loadLora(s, "ad1");
  const e = await expectError(
    s,
    "/v1/completions/render",
    { model: "ghost", prompt: [] },
    404,
    "The model `ghost` does not exist.",
  );
  assert.equal(e.error.type, "NotFoundError");
  await expectError(
    s,
    "/v1/completions/render",
    { model: "ad1", prompt: "hi" },
    400,
    "The model `ad1` is a LoRA adapter and is not supported by the render endpoints.",
  );
});

Deno.test("completions render: empty prompts → 400 in the render endpoints' words", async () => {
  await using s = await startSim();
  const cases: [unknown, string][] = [
    [[], "prompt array must contain at least one prompt"],
    [undefined, "prompt array must contain at least one prompt"],
    [null, "prompt array must contain at least one prompt"],
    ["", "prompt must not contain an empty string"],
    [["a", ""], "prompt must not contain an empty string"],
    [[[1], []], "prompt must not contain an empty token-id array"],
  ];
  for (const [prompt, message] of cases) {
    await expectError(s, "/v1/completions/render", { model: "test-model", prompt }, 400, message);
  }
  // The shared prompt rules still apply past the emptiness checks.
  await expectError(s, "/v1/completions/render", { prompt: [[1, -1]] }, 400, /token ids/);
  await expectError(s, "/v1/completions/render", { prompt: 5 }, 400, /'prompt' must be/);
});

// ---------------------------------------------------------------------------
// POST /v1/chat/completions/render

Deno.test("chat render: token ids of the chat rendering; no features without media", async () => {
  await using s = await startSim();
  const messages = [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }];
  const res = await s.post("/v1/chat/completions/render", { model: "test-model", messages });
  assert.equal(res.status, 200);
  const text = await res.text();
  const ids = builtinIds(renderChat(parseMessages(messages)));
  assert.equal(text, JSON.stringify({ token_ids: ids }));
});

Deno.test("chat render: features for image_url and input_audio parts", async () => {
  await using s = await startSim();
  const res = await s.post("/v1/chat/completions/render", {
    model: "test-model",
    messages: IMAGE_AND_AUDIO,
  });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.deepEqual(Object.keys(body), ["token_ids", "features"]);
  const ids = builtinIds(renderChat(parseMessages(IMAGE_AND_AUDIO)));
  assert.deepEqual(body.token_ids, ids);
  assert.equal(
    JSON.stringify(body.features),
    JSON.stringify(synthesizeFeatures(media(IMAGE_AND_AUDIO), ids.length)),
  );
  assert.deepEqual(body.features.mm_hashes, {
    audio: ["sim_audio_0_1e41455"],
    image: ["sim_img_0_131ffd"],
  });
});

Deno.test("chat render: model first, then messages must not be empty", async () => {
  await using s = await startSim();
  await loadLora(s, "ad2");
  const path = "/v1/chat/completions/render";
  await expectError(
    s,
    path,
    { model: "ghost", messages: [] },
    404,
    "The model `ghost` does not exist.",
  );
  await expectError(
    s,
    path,
    { model: "ad2", messages: [{ role: "user", content: "x" }] },
    400,
    "The model `ad2` is a LoRA adapter and is not supported by the render endpoints.",
  );
  for (const messages of [[], undefined, null]) {
    await expectError(
      s,
      path,
      { model: "test-model", messages },
      400,
      "messages must not be empty",
    );
  }
  await expectError(s, path, { messages: [{ content: "x" }] }, 400, /role/);
});

// ---------------------------------------------------------------------------
// Multimodal features

Deno.test("features: golden bytes of one image_url and one input_audio message", () => {
  const f = synthesizeFeatures(media(IMAGE_AND_AUDIO), 10);
  assert.equal(
    JSON.stringify(f),
    '{"mm_hashes":{"audio":["sim_audio_0_1e41455"],"image":["sim_img_0_131ffd"]},' +
      '"mm_placeholders":{"audio":[{"offset":5,"length":5}],"image":[{"offset":0,"length":5}]},' +
      '"kwargs_data":{"audio":["c2ltX2F1ZGlvXzBfMWU0MTQ1NQ=="],"image":["c2ltX2ltZ18wXzEzMWZmZA=="]}}',
  );
});

Deno.test("features: per-modality indexes, empty sources skipped, placeholders clamped", () => {
  const messages = [
    {
      role: "user",
      content: [
        { type: "image_url", image_url: { url: "a" } },
        { type: "video_url", video_url: { url: "v" } },
        { type: "image_url", image_url: { url: "" } },
        { type: "input_audio", input_audio: { data: "" } },
        { type: "text", text: "t" },
      ],
    },
    { role: "user", content: "plain" },
    { role: "user", content: [{ type: "image_url", image_url: { url: "b" } }] },
  ];
  const items = media(messages);
  assert.deepEqual(items.map((i) => i.modality), ["image", "video", "image"]);
  const f = synthesizeFeatures(items, 2)!;
  assert.deepEqual(Object.keys(f.mm_hashes), ["image", "video"]);
  assert.match(f.mm_hashes.image![0], /^sim_img_0_[0-9a-f]+$/);
  assert.match(f.mm_hashes.image![1], /^sim_img_1_[0-9a-f]+$/);
  assert.match(f.mm_hashes.video![0], /^sim_video_0_[0-9a-f]+$/);
  // T=2, I=3: span 1; item 2's offset 2 is clamped to 1.
  assert.deepEqual(f.mm_placeholders.image, [{ offset: 0, length: 1 }, { offset: 1, length: 1 }]);
  assert.deepEqual(f.mm_placeholders.video, [{ offset: 1, length: 1 }]);
  // T=7, I=3: span 2.
  const g = synthesizeFeatures(items, 7)!;
  assert.deepEqual(g.mm_placeholders.image, [{ offset: 0, length: 2 }, { offset: 4, length: 2 }]);
  assert.equal(synthesizeFeatures([], 10), undefined);
  assert.equal(atob(f.kwargs_data.video![0]), f.mm_hashes.video![0]);
});

// ---------------------------------------------------------------------------
// GET /query

Deno.test("query: every rank answers the same map of every rank's engine id", async () => {
  await using s = await startSim(["--data-parallel-size", "3", "--seed", "42"]);
  const ranks = s.running.ranks;
  assert.equal(ranks.length, 3);
  const texts: string[] = [];
  for (const r of ranks) {
    const res = await fetch(`${r.url}/query`);
    assert.equal(res.status, 200);
    texts.push(await res.text());
  }
  assert.equal(texts[1], texts[0]);
  assert.equal(texts[2], texts[0]);
  const map = JSON.parse(texts[0]);
  assert.deepEqual(Object.keys(map), ["0", "1", "2"]);
  ranks.forEach((r, i) => assert.deepEqual(map[String(i)], { engine_id: r.sim.engineId }));
  const ids = new Set(Object.values(map).map((v) => (v as { engine_id: string }).engine_id));
  assert.equal(ids.size, 3);
  for (const id of ids) {
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-/);
  }
});

Deno.test("query: with --data-parallel-rank the map still has data-parallel-size entries", async () => {
  await using s = await startSim([
    "--data-parallel-size",
    "3",
    "--data-parallel-rank",
    "2",
    "--seed",
    "42",
  ]);
  assert.equal(s.running.ranks.length, 1);
  const map = await (await fetch(`${s.url}/query`)).json();
  assert.deepEqual(Object.keys(map), ["0", "1", "2"]);
  assert.equal(map["2"].engine_id, s.running.ranks[0].sim.engineId);
  // Same seed, same ids as the in-process ranks above.
  await using all = await startSim(["--data-parallel-size", "3", "--seed", "42"]);
  assert.deepEqual(await (await fetch(`${all.url}/query`)).json(), map);
});

Deno.test("detokenize: each simulator decodes only what it has encoded itself", async () => {
  await using a = await startSim();
  await using b = await startSim();
  const ids = (await (await a.post("/tokenize", { prompt: "zebra-crossing" })).json()).tokens;
  assert.deepEqual(await (await a.post("/detokenize", { tokens: ids })).json(), {
    prompt: "zebra-crossing",
  });
  // Another pod in the same process never saw these ids.
  const other = await b.post("/detokenize", { tokens: ids });
  assert.equal(other.status, 400);
  await other.body?.cancel();
  // The built-in sentences' tokens decode everywhere.
  const answer = await (await b.post("/v1/completions", {
    model: "test-model",
    prompt: "x",
    max_tokens: 5,
  })).json();
  const own = (await (await a.post("/tokenize", { prompt: answer.choices[0].text })).json()).tokens;
  const back = await (await b.post("/detokenize", { tokens: own })).json();
  assert.equal(back.prompt, answer.choices[0].text);
});

Deno.test("detokenize: huge decoded texts and huge learned tokens are 400s, never 500s", async () => {
  await using s = await startSim();
  // A 300 000-character "word" is one token, too long to be kept for decoding.
  const long = await (await s.post("/tokenize", { prompt: "a".repeat(300_000) })).json();
  const res = await s.post("/detokenize", { tokens: [long.tokens[0]] });
  assert.equal(res.status, 400);
  await res.body?.cancel();
  // A 256-character token is kept; a million of them decode past the bound.
  const ok = await (await s.post("/tokenize", { prompt: "b".repeat(256) })).json();
  const many = await s.post("/detokenize", { tokens: Array(100_000).fill(ok.tokens[0]) });
  assert.equal(many.status, 400);
  assert.match((await many.json()).error.message, /longer than 16777216 characters/);
  const one = await (await s.post("/detokenize", { tokens: ok.tokens })).json();
  assert.equal(one.prompt, "b".repeat(256));
});
