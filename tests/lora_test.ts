/** LoRA adapters: configuration, run-time load/unload, the max-loras rule. */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { loadConfig } from "../lib/config.ts";
import { startSim } from "./helpers.ts";

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
  await using s = await startSim([...LORAS, "--time-to-first-token", "300ms"]);
  const inflight = s.client.completions.create({ model: "a", prompt: "x", max_tokens: 2 });
  await new Promise((r) => setTimeout(r, 50));
  const res = await s.post("/v1/unload_lora_adapter", { lora_name: "a" });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  const done = await inflight;
  assert.equal(done.model, "a");
  assert.equal(done.choices.length, 1);
  await assert.rejects(
    () => s.client.completions.create({ model: "a", prompt: "x" }),
    OpenAI.NotFoundError,
  );
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
  const t0 = performance.now();
  const timed = (model: string) =>
    s.client.completions.create({ model, prompt: "x", max_tokens: 1 }).then(() =>
      performance.now() - t0
    );
  const a1 = timed("a");
  await new Promise((r) => setTimeout(r, 30));
  const b = timed("b");
  const base = timed("test-model");
  const a2 = timed("a");
  await new Promise((r) => setTimeout(r, 60));
  // While b waits, the engine reports it as a waiting adapter.
  assert.equal(s.running.ranks[0].sim.engine.waitingCount, 1);
  assert.deepEqual(s.running.ranks[0].sim.engine.waitingLoras(), ["b"]);
  const [ta1, tb, tbase, ta2] = await Promise.all([a1, b, base, a2]);
  assert.ok(ta1 >= 380 && ta1 < 750, `a1 ${ta1}`);
  assert.ok(tbase < 750, `base model request did not wait: ${tbase}`);
  assert.ok(ta2 < 750, `same adapter runs alongside: ${ta2}`);
  assert.ok(tb >= 780, `adapter b waited for a: ${tb}`);
});
