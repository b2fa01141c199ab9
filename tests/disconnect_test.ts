/**
 * Clients that hang up while a non-streaming answer is pending must free
 * their slot, whatever the request's size (Deno's HTTP/1.1 server reports
 * such disconnects itself only for small requests: routes/disconnect.ts).
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import type { Job } from "../lib/engine.ts";
import { collectOpen } from "../routes/disconnect.ts";
import { startSim, waitFor } from "./helpers.ts";

/**
 * How long to wait for a condition that normally holds within milliseconds
 * (a request reaching the engine, a disconnect being noticed). Generous so
 * that a loaded machine does not fail the tests; what the tests tell apart
 * is freed at all versus held for the whole 5 s TTFT, which is checked by
 * the state of the job, not by time.
 */
const WAIT_MS = 10000;

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
    await waitFor(() => engine.runningCount === 1, WAIT_MS, "request running");
    const [job] = engine.running;
    ac.abort();
    await pending;
    await waitFor(() => engine.runningCount === 0, WAIT_MS, `${path}: slot freed`);
    // Freed by the disconnect, not by the request running to its end.
    assert.equal(job.state, "cancelled", `${path}: freed by the disconnect`);
  }
});

Deno.test("the openai SDK's client timeout frees the slot of a large request", async () => {
  await using s = await startSim(["--time-to-first-token", "5s", "--max-model-len", "100000"]);
  const engine = s.running.ranks[0].sim.engine;
  const jobs: Job[] = [];
  engine.observers.push({ started: (job) => void jobs.push(job) });
  // The client gives up after 1 s: ample time for the request to reach the
  // engine even on a loaded machine, and far short of the 5 s TTFT.
  const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "x", maxRetries: 0, timeout: 1000 });
  await assert.rejects(
    () =>
      client.chat.completions.create({
        model: "test-model",
        messages: [{ role: "user", content: "a long question ".repeat(500) }],
      }),
    OpenAI.APIConnectionTimeoutError,
  );
  // The request ran, and its slot was freed when the client left.
  await waitFor(
    () => jobs.length === 1 && engine.runningCount === 0,
    WAIT_MS,
    "the request to run and its slot to be freed",
  );
  assert.equal(jobs[0].state, "cancelled", "freed by the disconnect");
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
  await waitFor(() => sim.held.size === 1, WAIT_MS, "request held");
  ac.abort();
  await pending;
  await waitFor(() => sim.held.size === 0, WAIT_MS, "hold released on disconnect");
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
