/**
 * Clients that hang up while a non-streaming answer is pending must free
 * their slot, whatever the request's size (Deno's HTTP/1.1 server reports
 * such disconnects itself only for small requests: routes/disconnect.ts).
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { heldRequests } from "../lib/failures.ts";
import { collectOpen } from "../routes/disconnect.ts";
import { startSim, waitFor } from "./helpers.ts";

Deno.test("a large non-streaming request whose client leaves frees its slot", async () => {
  await using s = await startSim([
    "--time-to-first-token",
    "5s",
    "--max-num-seqs",
    "1",
    "--max-model-len",
    "100000",
  ]);
  const engine = s.running.ranks[0].sim.engine;
  // ~20 KB of prompt: far beyond what the runtime notices by itself.
  const prompt = "lorem ipsum ".repeat(1700);
  for (const path of ["/v1/completions", "/v1/chat/completions"]) {
    const body = path === "/v1/completions"
      ? { model: "test-model", prompt, max_tokens: 5 }
      : { model: "test-model", messages: [{ role: "user", content: prompt }], max_tokens: 5 };
    const ac = new AbortController();
    const pending = fetch(s.url + path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: ac.signal,
    }).catch(() => null);
    await waitFor(() => engine.runningCount === 1, 2000, "request running");
    ac.abort();
    await pending;
    await waitFor(() => engine.runningCount === 0, 2000, `${path}: slot freed`);
  }
});

Deno.test("the openai SDK's client timeout frees the slot of a large request", async () => {
  await using s = await startSim(["--time-to-first-token", "5s", "--max-model-len", "100000"]);
  const engine = s.running.ranks[0].sim.engine;
  const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "x", maxRetries: 0, timeout: 300 });
  await assert.rejects(
    () =>
      client.chat.completions.create({
        model: "test-model",
        messages: [{ role: "user", content: "a long question ".repeat(500) }],
      }),
    OpenAI.APIConnectionTimeoutError,
  );
  await waitFor(() => engine.runningCount === 0, 2000, "slot freed");
  const health = await fetch(`${s.url}/health`);
  assert.equal(health.status, 200, "the server carries on serving");
  await health.body?.cancel();
});

Deno.test("a held `timeout` failure with a large body is freed when the client leaves", async () => {
  await using s = await startSim([
    "--failure-injection-rate",
    "100",
    "--failure-types",
    "timeout",
    "--max-model-len",
    "100000",
  ]);
  const sim = s.running.ranks[0].sim;
  const ac = new AbortController();
  const pending = fetch(`${s.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "test-model", prompt: "word ".repeat(3000) }),
    signal: ac.signal,
  }).catch(() => null);
  await waitFor(() => heldRequests(sim) === 1, 2000, "request held");
  ac.abort();
  await pending;
  await waitFor(() => heldRequests(sim) === 0, 2000, "hold released on disconnect");
});

Deno.test("collectOpen reads established client ports of our port from /proc/net/tcp", () => {
  const table = [
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid",
    "   0: 0100007F:1F40 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0",
    "   1: 0100007F:1F40 0100007F:D432 08 00000000:00000000 00:00000000 00000000     0",
    "   2: 0100007F:1F41 0100007F:D433 01 00000000:00000000 00:00000000 00000000     0",
    "   3: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0",
  ].join("\n");
  const out = new Set<number>();
  collectOpen(table, 0x1f40, out);
  assert.deepEqual([...out], [0xd431]); // CLOSE_WAIT, other ports and the listener are not
});
