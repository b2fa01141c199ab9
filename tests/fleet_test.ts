/**
 * A fleet in one process (--pods): independent pods, each on its own port
 * with its own name, seed, engine ids and metrics; listed for Prometheus in
 * an SD file and at GET /fleet/targets.
 */
import assert from "node:assert/strict";
import { startSim } from "./helpers.ts";

interface Target {
  targets: string[];
  labels: Record<string, string>;
}

Deno.test("fleet: 50 pods, each its own port, name, engine id and registry; all listed for Prometheus", async () => {
  const dir = await Deno.makeTempDir();
  const sd = `${dir}/targets.json`;
  try {
    await using s = await startSim(["--pods", "50", "--sd-file", sd, "--seed", "7"], {
      POD_NAME: "sim",
    });
    const ranks = s.running.ranks;
    assert.equal(ranks.length, 50);
    assert.equal(new Set(ranks.map((r) => r.port)).size, 50, "distinct ports");
    // Every pod answers on its own port, under its own name.
    const names = await Promise.all(ranks.map(async (r) => {
      const res = await fetch(`http://127.0.0.1:${r.port}/v1/models`);
      assert.equal(res.status, 200);
      await res.body?.cancel();
      return res.headers.get("x-inference-pod");
    }));
    assert.deepEqual(names, ranks.map((_, i) => `sim-${i}`));
    // Independent registries: a request to pod 31 shows only there.
    const res = await fetch(`http://127.0.0.1:${ranks[31].port}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "test-model", prompt: "hi", max_tokens: 2 }),
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const counted = await Promise.all(ranks.map(async (r) => {
      const text = await (await fetch(`http://127.0.0.1:${r.port}/metrics`)).text();
      return [...text.matchAll(/^vllm:request_success_total\{[^}]*\} (\S+)$/gm)]
        .reduce((n, m) => n + Number(m[1]), 0);
    }));
    assert.deepEqual(counted, ranks.map((_, i) => i === 31 ? 1 : 0));
    // Each pod its own seed: engine ids differ between pods.
    const ids = await Promise.all(
      [0, 1, 49].map(async (i) =>
        (await (await fetch(`http://127.0.0.1:${ranks[i].port}/query`)).json())["0"].engine_id
      ),
    );
    assert.equal(new Set(ids).size, 3);
    // Service discovery: the file and the endpoint list every pod.
    const file: Target[] = JSON.parse(await Deno.readTextFile(sd));
    assert.equal(file.length, 50);
    assert.deepEqual(
      file.map((t) => t.targets[0]),
      ranks.map((r) => `127.0.0.1:${r.port}`),
    );
    assert.equal(file[12].labels.pod, "sim-12");
    assert.equal(file[12].labels.model, "test-model");
    const served: Target[] = await (await fetch(`http://127.0.0.1:${ranks[20].port}/fleet/targets`))
      .json();
    assert.deepEqual(served, file);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fleet: pods of data-parallel ranks; one pod is the plain simulator", async () => {
  await using s = await startSim(["--pods", "3", "--data-parallel-size", "2"]);
  const ranks = s.running.ranks;
  assert.equal(ranks.length, 6);
  assert.deepEqual(ranks.map((r) => [r.pod, r.sim.rank]), [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [
    2,
    1,
  ]]);
  const targets: Target[] = await (await fetch(`${s.url}/fleet/targets`)).json();
  assert.equal(targets.length, 3);
  assert.equal(targets[1].targets.length, 2);
  assert.equal(targets[1].labels.pod, "vllm-sim-1");
  // Without --pods nothing is renamed and the seed is the configured one.
  await using one = await startSim(["--seed", "7"]);
  assert.equal(one.running.ranks[0].podName, undefined);
  assert.equal(one.running.ranks[0].sim.config.seed, 7);
});

Deno.test("fleet file: 50 pods in two groups, each group its own model and settings", async () => {
  const dir = await Deno.makeTempDir();
  const fleet = `${dir}/fleet.yaml`;
  const sd = `${dir}/targets.json`;
  await Deno.writeTextFile(
    fleet,
    [
      "groups:",
      "  - name: alpha",
      "    pods: 30",
      "    options:",
      "      model: alpha-model",
      "      served-model-name: [alpha, alpha-chat]",
      "  - name: beta",
      "    pods: 20",
      "    options:",
      "      model: beta-model",
      "      failure-injection-rate: 100",
      "      failure-types: [rate_limit]",
      "      enable-sleep-mode: true",
    ].join("\n"),
  );
  try {
    await using s = await startSim(["--model", "base", "--fleet", fleet, "--sd-file", sd]);
    const ranks = s.running.ranks;
    assert.equal(ranks.length, 50);
    const ask = async (port: number, model: string) => {
      const res = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model, prompt: "hi", max_tokens: 2 }),
      });
      await res.body?.cancel();
      return res.status;
    };
    for (const [i, r] of ranks.entries()) {
      const alpha = i < 30;
      assert.equal(r.podName, alpha ? `alpha-${i}` : `beta-${i - 30}`);
      const models = await (await fetch(`http://127.0.0.1:${r.port}/v1/models`)).json();
      assert.deepEqual(
        models.data.map((m: { id: string }) => m.id),
        alpha ? ["alpha", "alpha-chat"] : ["beta-model"],
        `pod ${i}'s models`,
      );
      // Failure injection is beta's setting only.
      assert.equal(
        await ask(r.port, alpha ? "alpha" : "beta-model"),
        alpha ? 200 : 429,
        `pod ${i}`,
      );
    }
    const targets: Target[] = JSON.parse(await Deno.readTextFile(sd));
    assert.equal(targets.length, 50);
    assert.deepEqual(
      [...new Set(targets.map((t) => t.labels.model))],
      ["alpha-model", "beta-model"],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fleet file: mistakes are configuration errors naming --fleet", async () => {
  const { readFleetFile } = await import("../lib/fleet.ts");
  const { ConfigError } = await import("../lib/config.ts");
  const dir = await Deno.makeTempDir();
  try {
    const cases: [string, RegExp][] = [
      ["groups: []", /non-empty/],
      ["groups:\n  - name: Bad_Name\n    pods: 1", /DNS label/],
      ["groups:\n  - name: a\n    pods: 0", /pods must be/],
      ["groups:\n  - name: a\n    pods: 1\n  - name: a\n    pods: 1", /used twice/],
      ["groups:\n  - name: a\n    pods: 1\n    options: { port: 9000 }", /process's/],
      ["groups:\n  - name: a\n    pods: 1\n    extra: 1", /unknown key extra/],
      ["groups: [", /--fleet/],
    ];
    for (const [text, re] of cases) {
      const path = `${dir}/f.yaml`;
      await Deno.writeTextFile(path, text);
      assert.throws(() => readFleetFile(path), (e: unknown) => {
        assert.ok(e instanceof ConfigError, String(e));
        assert.equal(e.option, "fleet");
        assert.match(e.message, re);
        return true;
      }, text);
    }
    // An option the table does not know fails the start like a bad flag.
    await Deno.writeTextFile(
      `${dir}/f.yaml`,
      "groups:\n  - name: a\n    pods: 2\n    options: { no-such-flag: 1 }",
    );
    await assert.rejects(() => startSim(["--fleet", `${dir}/f.yaml`]), /no-such-flag/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
