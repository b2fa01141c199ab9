/** LoRA adapters: configuration, run-time load/unload, the max-loras rule. */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { loadConfig } from "../lib/config.ts";
import type { Job } from "../lib/engine.ts";
import { DUE_WINDOW_MS } from "../lib/timers.ts";
import { startSim, type TestServer, waitFor } from "./helpers.ts";

/** How early a request may finish: the timer queue runs deadlines this close at once. */
const EARLY_MS = DUE_WINDOW_MS + 0.01;
/** Upper bounds on timing: configured + this, which only a stalled machine exceeds. */
const SLOW_MS = 1000;
/** How long to wait for a condition that normally holds within milliseconds. */
const WAIT_MS = 5000;
/**
 * A scenario that needs one request still running when others arrive (they
 * are sent as soon as it runs, with its whole TTFT to spare) is run again if
 * a stalled machine let it finish first, up to this many times.
 */
const ROUNDS = 5;

const engineOf = (s: TestServer) => s.running.ranks[0].sim.engine;

const LORAS = ["--lora-modules", '{"name":"a","path":"/adapters/a"}', '{"name":"b"}'];

Deno.test("config: lora-modules entries, legacy --lora, max-cpu-loras rules", () => {
  const c = loadConfig(["--model", "m", ...LORAS, "--max-loras", "2"], {}).config;
  assert.deepEqual(c["lora-modules"].map((l) => l.name), ["a", "b"]);
  assert.equal(c["max-cpu-loras"], 2, "max-cpu-loras defaults to max-loras");
  const legacy = loadConfig(["--model", "m", "--lora", "x,y"], {});
  assert.deepEqual(legacy.config["lora-modules"].map((l) => l.name), ["x", "y"]);
  assert.ok(legacy.warnings.some((w) => /lora/.test(w) && /deprecat/i.test(w)));
  const bad: [string[], RegExp][] = [
    [["--lora-modules", "{not json"], /lora-modules/],
    [["--lora-modules", '{"path":"/x"}'], /lora-modules/],
    [["--lora-modules", '{"name":"a","base_model_name":"other"}'], /lora-modules/],
    [["--max-loras", "2", "--max-cpu-loras", "1"], /max-cpu-loras/],
    [["--max-loras", "0"], /max-loras/],
  ];
  for (const [flags, re] of bad) {
    assert.throws(() => loadConfig(["--model", "m", ...flags], {}), re, flags.join(" "));
  }
});

Deno.test("models: configured adapters are listed with root = path, parent = base", async () => {
  await using s = await startSim(LORAS);
  const ids = (await s.client.models.list()).data as unknown as {
    id: string;
    root: string;
    parent: string | null;
  }[];
  assert.deepEqual(ids.map((m) => [m.id, m.root, m.parent]), [
    ["test-model", "test-model", null],
    ["a", "/adapters/a", "test-model"],
    ["b", "b", "test-model"],
  ]);
  const r = await s.client.completions.create({ model: "a", prompt: "hi", max_tokens: 2 });
  assert.equal(r.model, "a");
});

Deno.test("load/unload: success text, servable at once, error cases", async () => {
  await using s = await startSim([
    "--max-loras",
    "1",
    "--max-cpu-loras",
    "2",
    ...LORAS.slice(0, 2),
  ]);
  const post = async (path: string, body: unknown) => {
    const res = await s.post(path, body);
    return { status: res.status, text: await res.text() };
  };
  let r = await post("/v1/load_lora_adapter", { lora_name: "new", lora_path: "/p/new" });
  assert.equal(r.status, 200);
  assert.equal(r.text, "Success: LoRA adapter 'new' added successfully.");
  const models = await s.client.models.list();
  const entry = models.data.find((m) => m.id === "new") as unknown as {
    root: string;
    parent: string;
  };
  assert.equal(entry.root, "/p/new");
  assert.equal(entry.parent, "test-model");
  const gen = await s.client.chat.completions.create({
    model: "new",
    messages: [{ role: "user", content: "x" }],
    max_tokens: 3,
  });
  assert.equal(gen.model, "new");

  r = await post("/v1/load_lora_adapter", { lora_name: "new", lora_path: "/p/new" });
  assert.equal(r.status, 400, "already loaded");
  assert.match(JSON.parse(r.text).error.message, /already been loaded/);
  r = await post("/v1/load_lora_adapter", { lora_name: "third", lora_path: "/p" });
  assert.equal(r.status, 400, "over max-cpu-loras");
  assert.match(JSON.parse(r.text).error.message, /max-cpu-loras/);
  for (
    const body of [
      {},
      { lora_name: "x" },
      { lora_path: "/x" },
      { lora_name: 5, lora_path: "/x" },
      "nope",
    ]
  ) {
    r = await post("/v1/load_lora_adapter", body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(JSON.parse(r.text).error.code, 400);
  }
  r = await post("/v1/load_lora_adapter", "{broken");
  assert.equal(r.status, 400);

  r = await post("/v1/unload_lora_adapter", { lora_name: "new" });
  assert.equal(r.status, 200);
  assert.equal(r.text, "Success: LoRA adapter 'new' removed successfully.");
  r = await post("/v1/unload_lora_adapter", { lora_name: "new" });
  assert.equal(r.status, 404);
  assert.equal(JSON.parse(r.text).error.type, "NotFoundError");
  r = await post("/v1/unload_lora_adapter", {});
  assert.equal(r.status, 400);
  assert.equal(
    JSON.parse(r.text).error.message,
    "either 'lora_name' and 'lora_int_id' needs to be provided.", // vLLM's words
  );
  await assert.rejects(
    () => s.client.completions.create({ model: "new", prompt: "x" }),
    OpenAI.NotFoundError,
  );
});

Deno.test("unload with requests in flight lets them finish; new ones get 404", async () => {
  // max-cpu-loras 2: room to load `a` again (next to `b`) should a round be run again.
  await using s = await startSim([
    ...LORAS,
    "--max-cpu-loras",
    "2",
    "--time-to-first-token",
    "300ms",
  ]);
  const e = engineOf(s);
  const name = "a";
  for (let round = 0;; round++) {
    if (round > 0) {
      const res = await s.post("/v1/load_lora_adapter", { lora_name: name, lora_path: "/p" });
      assert.equal(res.status, 200);
      await res.body?.cancel();
    }
    const inflight = s.client.completions.create({ model: name, prompt: "x", max_tokens: 2 });
    // Unload once the request runs (waiting for that, not for a fixed time).
    await waitFor(() => e.runningCount === 1, WAIT_MS, "the request to run");
    const [job] = e.running;
    const res = await s.post("/v1/unload_lora_adapter", { lora_name: name });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const wasInFlight = job.state === "running";
    const done = await inflight;
    assert.equal(done.model, name);
    assert.equal(done.choices.length, 1);
    assert.equal(job.state, "done");
    await assert.rejects(
      () => s.client.completions.create({ model: name, prompt: "x" }),
      OpenAI.NotFoundError,
    );
    if (wasInFlight) break;
    assert.ok(round + 1 < ROUNDS, `in ${ROUNDS} rounds the request ended before the unload`);
  }
});

Deno.test("max-loras: another adapter waits, the base model and the same adapter do not", async () => {
  await using s = await startSim([
    ...LORAS,
    "--max-loras",
    "1",
    "--max-num-seqs",
    "8",
    "--time-to-first-token",
    "400ms",
  ]);
  const e = engineOf(s);
  /** Every request the engine saw, in order: queued or started at once, and a1's state then. */
  let seen: { job: Job; queued: boolean; a1Running: boolean; waitingLoras: string[] }[] = [];
  const note = (job: Job, queued: boolean) => {
    if (seen.some((x) => x.job === job)) return; // started after waiting
    const a1 = seen[0]?.job ?? job;
    seen.push({ job, queued, a1Running: a1.state === "running", waitingLoras: e.waitingLoras() });
  };
  e.observers.push({ queued: (job) => note(job, true), started: (job) => note(job, false) });
  for (let round = 0;; round++) {
    seen = [];
    const t0 = performance.now();
    const timed = (model: string) =>
      s.client.completions.create({ model, prompt: "x", max_tokens: 1 }).then((r) => {
        assert.equal(r.model, model);
        return performance.now() - t0;
      });
    const a1 = timed("a");
    // The others are sent once a1 runs (waiting for that, not for a fixed time).
    await waitFor(() => seen.length === 1 && e.runningCount === 1, WAIT_MS, "a1 to run");
    const b = timed("b");
    const base = timed("test-model");
    const a2 = timed("a");
    const [ta1, tb, tbase, ta2] = await Promise.all([a1, b, base, a2]);
    assert.equal(seen.length, 4);
    // a1 must still have been running when the others came; else run again.
    if (!seen.every((x) => x.a1Running)) {
      assert.ok(round + 1 < ROUNDS, `in ${ROUNDS} rounds a1 always ended before the others came`);
      continue;
    }
    const byLora = (l: string | null) => seen.filter((x) => x.job.spec.lora === l);
    assert.deepEqual([byLora("a").length, byLora("b").length, byLora(null).length], [2, 1, 1]);
    const [[jA1, jA2], [jB]] = [byLora("a"), byLora("b")];
    // Only b waited; while it did, the engine reported it as a waiting adapter.
    assert.deepEqual(seen.filter((x) => x.queued).map((x) => x.job), [jB.job]);
    assert.deepEqual(jB.waitingLoras, ["b"]);
    // b started only once no request of adapter a was running.
    const aEnd = Math.max(jA1.job.phases.end, jA2.job.phases.end);
    assert.ok(jB.job.phases.start >= aEnd, "b started while a still ran");
    // As seen by the clients: a1, the base model and a2 took one TTFT (none
    // early, none waiting for another); b took two.
    const onTime = (t: number, expected: number, what: string) => {
      assert.ok(t >= expected - 2 * EARLY_MS, `${what}: ${t.toFixed(1)} ms, before ${expected}`);
      assert.ok(
        t <= expected + SLOW_MS,
        `${what}: ${t.toFixed(1)} ms, over ${expected} + ${SLOW_MS}`,
      );
    };
    onTime(ta1, 400, "a1");
    onTime(tbase, 400, "base model request did not wait");
    onTime(ta2, 400, "same adapter runs alongside");
    onTime(tb, 800, "adapter b waited for a");
    break;
  }
});
