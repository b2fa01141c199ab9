/**
 * The KV prefix cache through the server (kv-cache.md): cached_tokens on a
 * repeated prompt for every family that reports it, the prefix-cache metrics
 * and usage gauge, requests waiting for blocks instead of failing, the 400
 * for a prompt larger than the cache, LoRA prompts cached under the
 * adapter's name, sleep clearing the cache, and POD_IP at start-up.
 */
import assert from "node:assert/strict";
import { ConfigError } from "../lib/config.ts";
import { expectError, startSim, type TestServer } from "./helpers.ts";

const ENV = { POD_IP: "10.0.0.7" };
// No publisher: these tests need no ZMQ (tests/kv_events_test.ts has it, in child processes).
const KV = ["--model", "m", "--enable-kvcache", "--block-size", "8", "--zmq-endpoint", ""];
/** A prompt of 4 full blocks and a partial one (built-in tokenizer: one word a token). */
const PROMPT = Array.from({ length: 36 }, (_, i) => `w${i}`).join(" ");

async function completion(s: TestServer, prompt: string | number[], extra = {}) {
  const r = await s.post("/v1/completions", { model: "m", prompt, max_tokens: 1, ...extra });
  assert.equal(r.status, 200);
  return await r.json();
}

async function metric(s: TestServer, name: string): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(name + " ") || l.startsWith(name + "{"));
  return Number(line?.split(" ").at(-1));
}

Deno.test("kv: a repeated prompt reports its leading cached blocks, in every family's usage", async () => {
  await using s = await startSim(KV, ENV);
  const first = await completion(s, PROMPT);
  assert.equal(first.usage.prompt_tokens, 36);
  assert.equal(first.usage.prompt_tokens_details.cached_tokens, 0);
  const again = await completion(s, PROMPT);
  assert.equal(again.usage.prompt_tokens_details.cached_tokens, 32); // 4 full blocks of 8
  // A longer prompt with the same start: its first 4 blocks are cached.
  const longer = await completion(s, PROMPT + " more words here now ok fine yes");
  assert.equal(longer.usage.prompt_tokens_details.cached_tokens, 32);
  // Token-id prompts hash their ids; a different first block shares nothing after it.
  const ids = Array.from({ length: 24 }, (_, i) => i + 1);
  assert.equal((await completion(s, ids)).usage.prompt_tokens_details.cached_tokens, 0);
  assert.equal((await completion(s, ids)).usage.prompt_tokens_details.cached_tokens, 24);
  assert.equal(
    (await completion(s, [999, ...ids.slice(1)])).usage.prompt_tokens_details.cached_tokens,
    0,
  );
  // Chat, Responses (vLLM format carries cached tokens), generate's usage.
  const messages = [{ role: "user", content: PROMPT }];
  const chat = async () =>
    (await (await s.post("/v1/chat/completions", { model: "m", messages, max_tokens: 1 })).json())
      .usage.prompt_tokens_details.cached_tokens;
  assert.equal(await chat(), 0);
  assert.ok(await chat() >= 32);
  const gen = async () =>
    (await (await s.post("/inference/v1/generate", {
      token_ids: ids,
      sampling_params: { max_tokens: 1 },
      stream: true,
      stream_options: { include_usage: true },
    })).text()).match(/"cached_tokens":(\d+)/)![1];
  assert.equal(await gen(), "24");
  // Metrics: queries count every prompt token, hits the cached ones.
  assert.ok(await metric(s, "vllm:prefix_cache_queries_total") > 100);
  assert.ok(await metric(s, "vllm:prefix_cache_hits_total") >= 32 + 32 + 24 + 32 + 24);
});

Deno.test("kv: requests whose blocks do not fit wait for blocks, then run; usage gauge follows", async () => {
  // 6 blocks: one 4-block prompt runs, a second waits until the first ends.
  await using s = await startSim(
    [...KV, "--kv-cache-size", "6", "--max-num-seqs", "8", "--inter-token-latency", "100ms"],
    ENV,
  );
  const a = s.post("/v1/completions", {
    model: "m",
    prompt: PROMPT,
    max_tokens: 5,
    ignore_eos: true,
  });
  const other = Array.from({ length: 32 }, (_, i) => `x${i}`).join(" ");
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await metric(s, "vllm:kv_cache_usage_perc"), 4 / 6);
  const b = s.post("/v1/completions", { model: "m", prompt: other, max_tokens: 1 });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await metric(s, "vllm:num_requests_waiting"), 1);
  assert.equal(await metric(s, "vllm:num_requests_running"), 1);
  const [ra, rb] = await Promise.all([a, b]);
  assert.equal(ra.status, 200);
  assert.equal(rb.status, 200);
  await ra.body?.cancel();
  await rb.body?.cancel();
  assert.equal(await metric(s, "vllm:kv_cache_usage_perc"), 0);
  assert.equal(await metric(s, "vllm:num_requests_waiting"), 0);
});

Deno.test("kv: a prompt larger than the whole cache is a 400 at once", async () => {
  await using s = await startSim([...KV, "--kv-cache-size", "3"], ENV);
  await expectError(
    s,
    "/v1/completions",
    { model: "m", prompt: PROMPT, max_tokens: 1 },
    400,
    "The prompt needs 4 KV-cache blocks but the KV cache holds only 3 blocks (kv-cache-size)",
  );
  // Three blocks fit.
  const fits = PROMPT.split(" ").slice(0, 24).join(" ");
  assert.equal((await completion(s, fits)).usage.prompt_tokens, 24);
});

Deno.test("kv: LoRA prompts are cached under the adapter's name", async () => {
  await using s = await startSim([...KV, "--lora-modules", '{"name":"ad1"}'], ENV);
  await completion(s, PROMPT, { model: "ad1" });
  assert.equal(
    (await completion(s, PROMPT, { model: "ad1" })).usage.prompt_tokens_details.cached_tokens,
    32,
  );
  assert.equal((await completion(s, PROMPT)).usage.prompt_tokens_details.cached_tokens, 0);
});

Deno.test("kv: sleep clears the cache; wake_up re-enables it unless other tags are named", async () => {
  await using s = await startSim([...KV, "--enable-sleep-mode"], {
    ...ENV,
    VLLM_SERVER_DEV_MODE: "1",
  });
  await completion(s, PROMPT);
  assert.equal((await completion(s, PROMPT)).usage.prompt_tokens_details.cached_tokens, 32);
  const post = (path: string) => fetch(`${s.url}${path}`, { method: "POST" });
  await (await post("/sleep")).body?.cancel();
  await (await post("/wake_up?tags=weights")).body?.cancel();
  // Awake, but the cache stays off: nothing stored, nothing cached.
  await completion(s, PROMPT);
  assert.equal((await completion(s, PROMPT)).usage.prompt_tokens_details.cached_tokens, 0);
  await (await post("/sleep")).body?.cancel();
  await (await post("/wake_up")).body?.cancel();
  await completion(s, PROMPT);
  assert.equal((await completion(s, PROMPT)).usage.prompt_tokens_details.cached_tokens, 32);
});

Deno.test("kv: POD_IP is required with the cache on; without the cache nothing is cached", async () => {
  await assert.rejects(
    () => startSim(KV, {}),
    (e: Error) =>
      e instanceof ConfigError &&
      e.message === "IP should be defined in the environment (POD_IP) for KV cache to work",
  );
  await using off = await startSim(["--model", "m"]);
  await completion(off, PROMPT);
  assert.equal((await completion(off, PROMPT)).usage.prompt_tokens_details.cached_tokens, 0);
  assert.equal(await metric(off, "vllm:prefix_cache_queries_total"), 0);
});

Deno.test("kv: cache_hit_threshold and the global threshold answer cache_threshold after storing", async () => {
  await using s = await startSim([...KV, "--global-cache-hit-threshold", "0.5"], ENV);
  const messages = [{ role: "user", content: PROMPT }];
  const chat = async (extra = {}) =>
    await (await s.post("/v1/chat/completions", { model: "m", messages, max_tokens: 3, ...extra }))
      .json();
  // Nothing cached yet: below the global threshold. The blocks are stored anyway.
  const first = await chat();
  assert.equal(first.choices[0].finish_reason, "cache_threshold");
  assert.equal(first.usage.completion_tokens, 0);
  assert.equal(first.usage.prompt_tokens_details, null);
  // Now most of the prompt is cached: a normal answer.
  const second = await chat();
  assert.notEqual(second.choices[0].finish_reason, "cache_threshold");
  assert.ok(second.usage.prompt_tokens_details.cached_tokens >= 32);
  // The request's own threshold wins over the global one.
  const strict = await chat({ cache_hit_threshold: 1 });
  assert.equal(strict.choices[0].finish_reason, "cache_threshold");
  // Streaming: no role chunk, one chunk with the finish reason, then usage and [DONE].
  const text = await (await s.post("/v1/chat/completions", {
    model: "m",
    messages: [{ role: "user", content: "fresh words only here to miss the cache entirely now" }],
    max_tokens: 3,
    stream: true,
    stream_options: { include_usage: true },
  })).text();
  const frames = text.split("\n\n").filter((f) => f.startsWith("data: "));
  assert.equal(frames.length, 3, text);
  assert.match(frames[0], /"delta":\{\},"logprobs":null,"finish_reason":"cache_threshold"/);
  assert.match(frames[1], /"usage":\{"prompt_tokens":\d+,"total_tokens":\d+,"completion_tokens":0/);
  assert.equal(frames[2], "data: [DONE]");
});

Deno.test("kv: ZMQ and replay ports must not collide across data-parallel ranks", async () => {
  await assert.rejects(
    () =>
      startSim([
        ...KV,
        "--data-parallel-size",
        "2",
        "--zmq-endpoint",
        "tcp://127.0.0.1:7000",
        "--kv-events-replay-endpoint",
        "tcp://*:7001",
      ], ENV),
    (e: Error) =>
      e instanceof ConfigError &&
      e.message ===
        "zmq-endpoint (tcp://127.0.0.1:7000) and kv-events-replay-endpoint (tcp://*:7001) ports collide once offset by data-parallel rank",
  );
});

Deno.test("kv: an image enters the hashes of the blocks it overlaps", async () => {
  await using s = await startSim(KV, ENV);
  const chat = async (url: string) =>
    (await (await s.post("/v1/chat/completions", {
      model: "m",
      messages: [{
        role: "user",
        content: [{ type: "text", text: PROMPT }, { type: "image_url", image_url: { url } }],
      }],
      max_tokens: 1,
    })).json()).usage.prompt_tokens_details.cached_tokens;
  assert.equal(await chat("http://x/a.png"), 0);
  // The same text and image: cached. The same text with another image: the
  // image's placeholder spans the prompt, so no block matches.
  assert.ok(await chat("http://x/a.png") >= 32);
  assert.equal(await chat("http://x/b.png"), 0);
});

Deno.test("kv: cache_salt separates prompts under sha256_cbor (and is not part of fnv64a-cbor)", async () => {
  await using sha = await startSim([...KV, "--prefix-caching-hash-algo", "sha256_cbor"], ENV);
  const cached = async (s: TestServer, salt?: string) =>
    (await completion(s, PROMPT, salt ? { cache_salt: salt } : {})).usage.prompt_tokens_details
      .cached_tokens;
  assert.equal(await cached(sha, "tenant-a"), 0);
  assert.equal(await cached(sha, "tenant-a"), 32);
  assert.equal(await cached(sha, "tenant-b"), 0);
  assert.equal(await cached(sha), 0);
  await using fnv = await startSim(KV, ENV);
  assert.equal(await cached(fnv, "tenant-a"), 0);
  assert.equal(await cached(fnv, "tenant-b"), 32);
});
