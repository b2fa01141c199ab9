/** lib/latency.ts: the timing formulas of latency-and-scheduling.md, with a seeded Rng. */
import assert from "node:assert/strict";
import { type Config, loadConfig } from "../lib/config.ts";
import { interTokenMs, loadFactor, type PrefillInput, prefillMs } from "../lib/latency.ts";
import { Rng } from "../lib/rng.ts";

const cfgOf = (...flags: string[]): Config => loadConfig(["--model", "m", ...flags], {}).config;

const local = (promptTokens: number, cachedTokens = 0, running = 1): PrefillInput => ({
  promptTokens,
  cachedTokens,
  remotePrefill: false,
  running,
});
const remote = (promptTokens: number, running = 1): PrefillInput => ({
  promptTokens,
  cachedTokens: 0,
  remotePrefill: true,
  running,
});

function draws(n: number, f: (rng: Rng) => number, seed = 7): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => f(rng));
}
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const close = (actual: number, expected: number, tol: number, what = "") =>
  assert.ok(
    Math.abs(actual - expected) <= tol,
    `${what} ${actual} not within ${tol} of ${expected}`,
  );

Deno.test("constant form: exact mean without std-dev, no draw consumed", () => {
  const cfg = cfgOf("--latency-calculator", "constant", "--time-to-first-token", "250ms");
  const rng = new Rng(1);
  const before = new Rng(1).nextU32();
  assert.equal(prefillMs(cfg, rng, local(1000)), 250);
  assert.equal(rng.nextU32(), before, "no random draw for sd 0");
});

Deno.test("constant form: prompt length does not matter, mean of draws ≈ TTFT", () => {
  const cfg = cfgOf(
    "--latency-calculator",
    "constant",
    "--time-to-first-token",
    "200ms",
    "--time-to-first-token-std-dev",
    "20ms",
    "--prefill-time-per-token",
    "5ms",
  );
  const xs = draws(4000, (r) => prefillMs(cfg, r, local(500)));
  close(mean(xs), 200, 2, "mean");
  assert.ok(xs.every((x) => x >= 60 && x <= 340));
  assert.ok(new Set(xs).size > 3000, "draws vary");
});

Deno.test("constant form: draws are clamped to [0.3·m, 1.7·m] even with a huge std-dev", () => {
  // Validation forbids sd > 30% of the mean; the formula must clamp anyway.
  const cfg: Config = {
    ...cfgOf("--latency-calculator", "constant", "--time-to-first-token", "100ms"),
    "time-to-first-token-std-dev": 1000,
  };
  const xs = draws(5000, (r) => prefillMs(cfg, r, local(10)));
  assert.ok(xs.every((x) => x >= 30 && x <= 170), `min ${Math.min(...xs)} max ${Math.max(...xs)}`);
  // With sd 10× the mean, most draws land on the bounds.
  assert.ok(xs.filter((x) => x === 30).length > 1000);
  assert.ok(xs.filter((x) => x === 170).length > 1000);
  // Same for the inter-token latency.
  const itlCfg: Config = {
    ...cfgOf("--inter-token-latency", "20ms"),
    "inter-token-latency-std-dev": 500,
  };
  const ys = draws(5000, (r) => interTokenMs(itlCfg, r, 1));
  assert.ok(ys.every((y) => y >= 6 - 1e-9 && y <= 34 + 1e-9));
  assert.ok(ys.some((y) => Math.abs(y - 6) < 1e-9) && ys.some((y) => Math.abs(y - 34) < 1e-9));
});

Deno.test("per-token form: overhead + (n − c)·per-token, cached tokens are free", () => {
  const cfg = cfgOf(
    "--latency-calculator",
    "per-token",
    "--time-to-first-token",
    "999ms", // ignored by the per-token form
    "--prefill-overhead",
    "30ms",
    "--prefill-time-per-token",
    "2ms",
  );
  const rng = new Rng(3);
  assert.equal(prefillMs(cfg, rng, local(100)), 30 + 100 * 2);
  assert.equal(prefillMs(cfg, rng, local(100, 40)), 30 + 60 * 2);
  assert.equal(prefillMs(cfg, rng, local(100, 100)), 30);
  assert.equal(prefillMs(cfg, rng, local(0)), 30);
});

Deno.test("per-token form: prefill-time-std-dev jitters around the total, clamped", () => {
  const cfg = cfgOf(
    "--latency-calculator",
    "per-token",
    "--prefill-overhead",
    "20ms",
    "--prefill-time-per-token",
    "1ms",
    "--prefill-time-std-dev",
    "10ms",
  );
  const xs = draws(4000, (r) => prefillMs(cfg, r, local(90, 10)));
  close(mean(xs), 100, 1.5, "mean");
  assert.ok(xs.every((x) => x >= 30 && x <= 170));
});

Deno.test('legacy "" calculator: constant when TTFT or its std-dev is set, else per-token', () => {
  const perToken = ["--prefill-overhead", "10ms", "--prefill-time-per-token", "1ms"];
  const rng = new Rng(5);
  // Both TTFT and its std-dev zero: per-token.
  assert.equal(prefillMs(cfgOf(...perToken), rng, local(50, 20)), 10 + 30);
  // TTFT non-zero: constant wins over the per-token settings.
  assert.equal(prefillMs(cfgOf(...perToken, "--time-to-first-token", "70ms"), rng, local(50)), 70);
  // Only the std-dev non-zero (mean 0): still the constant form, N(0, sd) clamped to 0.
  const sdOnly: Config = { ...cfgOf(...perToken), "time-to-first-token-std-dev": 5 };
  assert.equal(prefillMs(sdOnly, rng, local(50)), 0);
  // The explicit calculators ignore the precedence rule.
  assert.equal(
    prefillMs(
      cfgOf(...perToken, "--time-to-first-token", "70ms", "--latency-calculator", "per-token"),
      rng,
      local(50),
    ),
    60,
  );
  assert.equal(
    prefillMs(cfgOf(...perToken, "--latency-calculator", "constant"), rng, local(50)),
    0,
  );
});

Deno.test("P/D remote prefill: kv-cache-transfer-latency replaces TTFT (constant form)", () => {
  const cfg = cfgOf(
    "--time-to-first-token",
    "500ms",
    "--kv-cache-transfer-latency",
    "40ms",
    "--kv-cache-transfer-time-per-token",
    "3ms",
  );
  const rng = new Rng(9);
  assert.equal(prefillMs(cfg, rng, remote(100)), 40);
  assert.equal(prefillMs(cfg, rng, local(100)), 500);
  const jittered = cfgOf(
    "--kv-cache-transfer-latency",
    "40ms",
    "--kv-cache-transfer-latency-std-dev",
    "8ms",
  );
  const xs = draws(4000, (r) => prefillMs(jittered, r, remote(100)));
  close(mean(xs), 40, 0.6, "mean");
  assert.ok(xs.every((x) => x >= 12 && x <= 68));
});

Deno.test("P/D remote prefill: per-token form is n·kv-cache-transfer-time-per-token", () => {
  const cfg = cfgOf(
    "--time-to-first-token",
    "500ms",
    "--kv-cache-transfer-time-per-token",
    "0.5ms",
    "--prefill-overhead",
    "100ms",
  );
  const rng = new Rng(11);
  // Legacy "": transfer latency and its std-dev are 0, so per-token; all n tokens count.
  assert.equal(prefillMs(cfg, rng, { ...remote(200), cachedTokens: 150 }), 100);
  const explicit = cfgOf(
    "--latency-calculator",
    "per-token",
    "--kv-cache-transfer-latency",
    "40ms",
    "--kv-cache-transfer-time-per-token",
    "2ms",
    "--kv-cache-transfer-time-std-dev",
    "10ms",
  );
  const xs = draws(4000, (r) => prefillMs(explicit, r, remote(50)));
  close(mean(xs), 100, 1.5, "mean");
  assert.ok(xs.every((x) => x >= 30 && x <= 170));
});

Deno.test("P/D remote prefill is network-bound: the load factor does not apply", () => {
  const flags = ["--time-factor-under-load", "4", "--max-num-seqs", "5"];
  const rng = new Rng(13);
  const constant = cfgOf(...flags, "--kv-cache-transfer-latency", "40ms");
  assert.equal(prefillMs(constant, rng, remote(10, 5)), 40);
  const perToken = cfgOf(...flags, "--kv-cache-transfer-time-per-token", "1ms");
  assert.equal(prefillMs(perToken, rng, remote(30, 5)), 30);
  // ...while the local forms are scaled.
  const ttft = cfgOf(...flags, "--time-to-first-token", "40ms");
  assert.equal(prefillMs(ttft, rng, local(10, 0, 5)), 160);
});

Deno.test("load factor: 1 at one running, f at max-num-seqs, linear between, clamped", () => {
  const cfg = cfgOf("--time-factor-under-load", "3", "--max-num-seqs", "5");
  assert.equal(loadFactor(cfg, 1), 1);
  assert.equal(loadFactor(cfg, 2), 1.5);
  assert.equal(loadFactor(cfg, 3), 2);
  assert.equal(loadFactor(cfg, 4), 2.5);
  assert.equal(loadFactor(cfg, 5), 3);
  assert.equal(loadFactor(cfg, 0), 1, "never below 1");
  assert.equal(loadFactor(cfg, 9), 3, "never above f");
  assert.equal(loadFactor(cfgOf("--max-num-seqs", "5"), 5), 1, "f defaults to 1");
  const single = cfgOf("--time-factor-under-load", "3", "--max-num-seqs", "1");
  assert.equal(loadFactor(single, 1), 1, "max-num-seqs ≤ 1 → 1");
  assert.equal(loadFactor(single, 4), 1);
});

Deno.test("load factor scales TTFT, prefill-overhead, prefill-time-per-token and ITL", () => {
  const flags = ["--time-factor-under-load", "2", "--max-num-seqs", "3"];
  const rng = new Rng(17);
  const ttft = cfgOf(...flags, "--time-to-first-token", "100ms");
  assert.equal(prefillMs(ttft, rng, local(10, 0, 1)), 100);
  assert.equal(prefillMs(ttft, rng, local(10, 0, 2)), 150);
  assert.equal(prefillMs(ttft, rng, local(10, 0, 3)), 200);
  const perToken = cfgOf(...flags, "--prefill-overhead", "10ms", "--prefill-time-per-token", "1ms");
  assert.equal(prefillMs(perToken, rng, local(40, 10, 3)), (10 + 30) * 2);
  const itl = cfgOf(...flags, "--inter-token-latency", "20ms");
  assert.equal(interTokenMs(itl, rng, 1), 20);
  assert.equal(interTokenMs(itl, rng, 2), 30);
  assert.equal(interTokenMs(itl, rng, 3), 40);
});

Deno.test("inter-token latency: per-token draws around the mean; zero means zero", () => {
  const cfg = cfgOf("--inter-token-latency", "20ms", "--inter-token-latency-std-dev", "5ms");
  const xs = draws(4000, (r) => interTokenMs(cfg, r, 1));
  close(mean(xs), 20, 0.4, "mean");
  assert.ok(xs.every((x) => x >= 6 && x <= 34));
  assert.equal(interTokenMs(cfgOf(), new Rng(1), 1), 0);
  assert.equal(prefillMs(cfgOf(), new Rng(1), local(100)), 0);
});

Deno.test("same seed, same draws", () => {
  const cfg = cfgOf(
    "--time-to-first-token",
    "100ms",
    "--time-to-first-token-std-dev",
    "20ms",
    "--inter-token-latency",
    "20ms",
    "--inter-token-latency-std-dev",
    "4ms",
  );
  const seq = (seed: number) => {
    const rng = new Rng(seed);
    return [
      prefillMs(cfg, rng, local(5)),
      ...Array.from({ length: 50 }, () => interTokenMs(cfg, rng, 1)),
    ];
  };
  assert.deepEqual(seq(42), seq(42));
  assert.notDeepEqual(seq(42), seq(43));
});

Deno.test("load factor scales the means, not the std-devs", () => {
  const cfg = cfgOf(
    "--max-num-seqs",
    "3",
    "--time-factor-under-load",
    "3",
    "--time-to-first-token",
    "100ms",
    "--time-to-first-token-std-dev",
    "30ms",
    "--inter-token-latency",
    "20ms",
    "--inter-token-latency-std-dev",
    "6ms",
  );
  const sd = (xs: number[]) => {
    const m = mean(xs);
    return Math.sqrt(mean(xs.map((x) => (x - m) ** 2)));
  };
  const ttft = draws(20_000, (r) => prefillMs(cfg, r, local(10, 0, 3)));
  close(mean(ttft), 300, 3, "ttft mean ×3");
  close(sd(ttft), 30, 2, "ttft sd as configured");
  const itl = draws(20_000, (r) => interTokenMs(cfg, r, 3));
  close(mean(itl), 60, 0.6, "itl mean ×3");
  close(sd(itl), 6, 0.4, "itl sd as configured");
});
