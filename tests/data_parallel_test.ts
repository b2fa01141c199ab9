/**
 * Data-parallel ranks as data-parallel.md says: past the reference's limits
 * with a warning, every rank's own ports (API, metrics, gRPC) and registry,
 * and the configuration rules (negative rank = unset, ports within 65535).
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { loadConfig } from "../lib/config.ts";
import { engineService } from "../lib/api/grpc/codec.ts";
import { startSim } from "./helpers.ts";

const load = (...argv: string[]) => loadConfig(["--model", "m", ...argv], {});

Deno.test("data parallel: the reference's limits are warnings; a negative rank is unset", () => {
  const big = load("--data-parallel-size", "12");
  assert.equal(big.config["data-parallel-size"], 12);
  assert.ok(
    big.warnings.some((w) => /data parallel size must be between 1 and 8/.test(w)),
    big.warnings.join("\n"),
  );
  const rank = load("--data-parallel-size", "16", "--data-parallel-rank", "9");
  assert.equal(rank.config["data-parallel-rank"], 9);
  assert.ok(rank.warnings.some((w) => /data parallel rank must be between 0 and 7/.test(w)));
  assert.equal(load("--data-parallel-rank", "-1").config["data-parallel-rank"], undefined);
  assert.equal(load("--data-parallel-size", "8").warnings.length, 0);
  // One rank per process: only its own port counts.
  assert.equal(
    load("--port", "65535", "--data-parallel-size", "4", "--data-parallel-rank", "3").config.port,
    65535,
  );
});

async function metricsText(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  return await res.text();
}

function successes(text: string): number {
  let n = 0;
  for (const m of text.matchAll(/^vllm:request_success_total\{[^}]*\} (\S+)$/gm)) n += Number(m[1]);
  return n;
}

Deno.test("data parallel: 10 ranks, each with its own API, metrics and gRPC port and registry", async () => {
  const size = 10;
  // Consecutive free ports for the metrics and gRPC listeners, below the ephemeral range.
  let metricsBase = 0;
  let grpcBase = 0;
  for (let tries = 0; tries < 50 && grpcBase === 0; tries++) {
    const base = 20000 + 40 * Math.floor(Math.random() * 300);
    try {
      for (let p = base; p < base + 2 * size; p++) {
        Deno.listen({ hostname: "127.0.0.1", port: p }).close();
      }
      [metricsBase, grpcBase] = [base, base + size];
    } catch {
      // taken; try another range
    }
  }
  assert.ok(grpcBase > 0, "found free port ranges");
  await using s = await startSim([
    "--data-parallel-size",
    String(size),
    "--metrics-port",
    String(metricsBase),
    "--grpc-port",
    String(grpcBase),
  ]);
  const ranks = s.running.ranks;
  assert.equal(ranks.length, size);
  assert.equal(new Set(ranks.map((r) => r.port)).size, size, "distinct API ports");
  // One request to rank 7 only.
  const seven = ranks[7];
  const res = await fetch(`http://127.0.0.1:${seven.port}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "test-model",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 2,
    }),
  });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  for (const [i, r] of ranks.entries()) {
    const expected = i === 7 ? 1 : 0;
    // Its registry, on its API port and on its metrics port (metrics-port + i).
    assert.equal(successes(await metricsText(`http://127.0.0.1:${r.port}`)), expected, `rank ${i}`);
    assert.equal(
      successes(await metricsText(`http://127.0.0.1:${metricsBase + i}`)),
      expected,
      `rank ${i}'s metrics port`,
    );
    assert.equal(r.grpcPort?.port, grpcBase + i, `rank ${i}'s gRPC port`);
  }
  // The gRPC port of rank 9 reaches rank 9.
  const Engine = grpc.makeGenericClientConstructor(engineService(), "VllmEngine");
  // deno-lint-ignore no-explicit-any
  const c: any = new Engine(`127.0.0.1:${grpcBase + 9}`, grpc.credentials.createInsecure());
  try {
    const health = await new Promise<{ healthy: boolean }>((resolve, reject) =>
      c.HealthCheck({}, (e: Error | null, r: { healthy: boolean }) => e ? reject(e) : resolve(r))
    );
    assert.equal(health.healthy, true);
  } finally {
    c.close();
  }
  // /query lists every rank, each under its own engine id.
  const map = await (await fetch(`http://127.0.0.1:${ranks[3].port}/query`)).json();
  assert.deepEqual(Object.keys(map), Array.from({ length: size }, (_, i) => String(i)));
  assert.equal(
    new Set(Object.values(map).map((v) => (v as { engine_id: string }).engine_id)).size,
    size,
  );
});

Deno.test("data parallel: /admin/config changes only the rank it reaches; no port among several", async () => {
  await using s = await startSim(["--data-parallel-size", "3", "--time-to-first-token", "5ms"]);
  const [r0, r1] = s.running.ranks;
  const get = async (port: number) =>
    await (await fetch(`http://127.0.0.1:${port}/admin/config`)).json() as Record<string, unknown>;
  const before = await get(r0.port);
  assert.equal(before["port"], undefined, "no port in the config of a rank among several");
  const post = await fetch(`http://127.0.0.1:${r1.port}/admin/config`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ "time-to-first-token": "2s" }),
  });
  assert.equal(post.status, 200);
  await post.body?.cancel();
  assert.equal((await get(r1.port))["time-to-first-token"], "2s");
  assert.equal((await get(r0.port))["time-to-first-token"], "5ms");
  assert.equal(r1.sim.config["time-to-first-token"], 2000);
  assert.equal(r0.sim.config["time-to-first-token"], 5);
  // A single rank keeps its port in the answer.
  await using one = await startSim();
  assert.equal(typeof (await get(one.running.ranks[0].port))["port"], "number");
});
