import assert from "node:assert/strict";
import { clampedNormal, Rng } from "../lib/rng.ts";
import { fnv1a32 } from "../lib/tokenizer.ts";
import { splitText } from "../lib/tokenizer/builtin.ts";
import { SENTENCES } from "../lib/sentences.ts";
import {
  bucketRange,
  randomText,
  randomTokens,
  responseLength,
  type ResponseLengthOptions,
} from "../lib/content.ts";

function draws(rng: Rng, k: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < k; i++) out.push(rng.next());
  return out;
}

Deno.test("rng: same seed gives the same sequence", () => {
  assert.deepEqual(draws(new Rng(42), 100), draws(new Rng(42), 100));
  assert.deepEqual(draws(new Rng(42n), 100), draws(new Rng(42), 100));
  assert.notDeepEqual(draws(new Rng(42), 100), draws(new Rng(43), 100));
  const a = new Rng(7);
  const b = new Rng(7);
  for (let i = 0; i < 50; i++) {
    assert.equal(a.int(3, 9), b.int(3, 9));
    assert.equal(a.normal(5, 2), b.normal(5, 2));
    assert.equal(a.pick(["x", "y", "z"]), b.pick(["x", "y", "z"]));
  }
});

Deno.test("rng: nanosecond seeds above 2^53 are handled exactly", () => {
  const ns = 1_700_000_000_123_456_789n;
  assert.deepEqual(draws(new Rng(ns), 20), draws(new Rng(ns), 20));
  // Adjacent bigint seeds (not distinguishable as doubles) give different streams.
  assert.notDeepEqual(draws(new Rng(ns), 20), draws(new Rng(ns + 1n), 20));
  // A large double is converted exactly through BigInt.
  const big = 1.7e18;
  assert.deepEqual(draws(new Rng(big), 20), draws(new Rng(BigInt(big)), 20));
  // Non-integers / non-finite do not throw.
  new Rng(1.5).next();
  new Rng(Number.NaN).next();
  new Rng(-1).next();
});

Deno.test("rng: ranges and fork", () => {
  const r = new Rng(1);
  for (let i = 0; i < 10_000; i++) {
    const x = r.next();
    assert.ok(x >= 0 && x < 1);
    const k = r.int(-2, 3);
    assert.ok(Number.isInteger(k) && k >= -2 && k <= 3);
  }
  assert.equal(r.int(5, 5), 5);
  const p1 = new Rng(99);
  const p2 = new Rng(99);
  const c1 = p1.fork();
  const c2 = p2.fork();
  assert.deepEqual(draws(c1, 20), draws(c2, 20));
  assert.deepEqual(draws(p1, 20), draws(p2, 20));
  const p3 = new Rng(99);
  const c3 = p3.fork();
  assert.notDeepEqual(draws(c3, 20), draws(p3, 20));
  assert.throws(() => r.pick([]));
});

Deno.test("rng: normal mean and sd", () => {
  const r = new Rng(5);
  let s = 0;
  let s2 = 0;
  const n = 50_000;
  for (let i = 0; i < n; i++) {
    const v = r.normal(10, 3);
    s += v;
    s2 += v * v;
  }
  const mean = s / n;
  const sd = Math.sqrt(s2 / n - mean * mean);
  assert.ok(Math.abs(mean - 10) < 0.1, `mean ${mean}`);
  assert.ok(Math.abs(sd - 3) < 0.1, `sd ${sd}`);
});

Deno.test("clampedNormal: bounds and sd 0", () => {
  const r = new Rng(11);
  let hitLo = false;
  let hitHi = false;
  for (let i = 0; i < 10_000; i++) {
    const v = clampedNormal(r, 100, 100);
    assert.ok(v >= 30 && v <= 170, `${v}`);
    if (v === 30) hitLo = true;
    if (v === 170) hitHi = true;
  }
  assert.ok(hitLo && hitHi);
  const a = new Rng(3);
  const b = new Rng(3);
  assert.equal(clampedNormal(a, 50, 0), 50);
  assert.equal(a.next(), b.next(), "sd 0 consumes no draw");
  assert.equal(clampedNormal(a, 0, 5), 0);
});

Deno.test("fnv1a32: known values", () => {
  assert.equal(fnv1a32(""), 0x811c9dc5);
  assert.equal(fnv1a32("a"), 0xe40c292c);
  assert.equal(fnv1a32("foobar"), 0xbf9cf968);
  const enc = new TextEncoder();
  const ref = (s: string) => {
    let h = 0x811c9dc5;
    for (const b of enc.encode(s)) h = Math.imul(h ^ b, 0x01000193);
    return h >>> 0;
  };
  for (const s of ["héllo", " 世界", "😀", "a\u{1F468}\u200D\u{1F469}b", "\ud800x", "x\udc00"]) {
    assert.equal(fnv1a32(s), ref(s), s);
  }
});

function opts(o: Partial<ResponseLengthOptions>): ResponseLengthOptions {
  return { ignoreEos: false, promptTokens: 10, maxModelLen: 1024, ...o };
}

Deno.test("responseLength: ignoreEos and tiny limits", () => {
  const r = new Rng(1);
  for (const m of [0, 1, 5, 77, 500]) {
    assert.deepEqual(responseLength(r, opts({ maxTokens: m, ignoreEos: true })), {
      length: m,
      limit: m,
      finishReason: "length",
    });
  }
  assert.deepEqual(responseLength(r, opts({ maxTokens: 1 })), {
    length: 1,
    limit: 1,
    finishReason: "length",
  });
  assert.equal(responseLength(r, opts({ maxTokens: 0 })).length, 0);
  for (let m = 2; m <= 6; m++) {
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const res = responseLength(r, opts({ maxTokens: m }));
      assert.ok(res.length >= 1 && res.length <= m);
      assert.equal(res.limit, m);
      assert.equal(res.finishReason, res.length === m ? "length" : "stop");
      seen.add(res.length);
    }
    assert.equal(seen.size, m);
  }
  // ignoreEos without a limit runs to the context window.
  assert.deepEqual(
    responseLength(r, opts({ ignoreEos: true, promptTokens: 100, maxModelLen: 300 })),
    { length: 200, limit: 200, finishReason: "length" },
  );
});

Deno.test("responseLength: distribution for M = 200", () => {
  const r = new Rng(2024);
  const n = 200_000;
  const m = 200;
  const counts = [0, 0, 0, 0, 0]; // [1,20] [21,40] [41,60] [61,180] [181,199]
  let atMax = 0;
  for (let i = 0; i < n; i++) {
    const res = responseLength(r, opts({ maxTokens: m }));
    assert.ok(res.length >= 1 && res.length <= m);
    assert.equal(res.finishReason, res.length === m ? "length" : "stop");
    if (res.length === m) atMax++;
    else if (res.length <= 20) counts[0]++;
    else if (res.length <= 40) counts[1]++;
    else if (res.length <= 60) counts[2]++;
    else if (res.length <= 180) counts[3]++;
    else counts[4]++;
  }
  const tol = 0.01;
  assert.ok(Math.abs(atMax / n - 0.15) < tol, `max ${atMax / n}`);
  const expected = [0.2, 0.3, 0.2, 0.05, 0.1];
  for (let i = 0; i < 5; i++) {
    assert.ok(Math.abs(counts[i] / n - expected[i]) < tol, `bucket ${i}: ${counts[i] / n}`);
  }
});

Deno.test("responseLength: equal buckets for M ≤ 101", () => {
  const r = new Rng(8);
  for (const m of [7, 8, 50, 101]) {
    const seen = new Set<number>();
    for (let i = 0; i < 20_000; i++) {
      const { length } = responseLength(r, opts({ maxTokens: m }));
      assert.ok(length >= 1 && length <= m);
      seen.add(length);
    }
    assert.equal(seen.size, m, `all of 1..${m} reachable`);
  }
  // M = 101: five buckets of 20 values, weights as specified.
  const n = 100_000;
  const counts = [0, 0, 0, 0, 0];
  for (let i = 0; i < n; i++) {
    const { length } = responseLength(r, opts({ maxTokens: 101 }));
    if (length < 101) counts[Math.floor((length - 1) / 20)]++;
  }
  const expected = [0.2, 0.3, 0.2, 0.05, 0.1];
  for (let i = 0; i < 5; i++) assert.ok(Math.abs(counts[i] / n - expected[i]) < 0.01);
});

Deno.test("responseLength: no limit", () => {
  const r = new Rng(77);
  const n = 50_000;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const res = responseLength(r, opts({ promptTokens: 24, maxModelLen: 1024 }));
    assert.equal(res.limit, 1000);
    assert.ok(Number.isInteger(res.length) && res.length >= 1 && res.length <= 1000);
    assert.equal(res.finishReason, "stop");
    sum += res.length;
  }
  // Truncation at 1 lifts the mean slightly above 40.
  assert.ok(Math.abs(sum / n - 40) < 2.5, `mean ${sum / n}`);
  // Small window: uniform 1..M, finish "length" at M.
  let hitMax = false;
  for (let i = 0; i < 2000; i++) {
    const res = responseLength(r, opts({ promptTokens: 90, maxModelLen: 100 }));
    assert.equal(res.limit, 10);
    assert.ok(res.length >= 1 && res.length <= 10);
    assert.equal(res.finishReason, res.length === 10 ? "length" : "stop");
    if (res.length === 10) hitMax = true;
  }
  assert.ok(hitMax);
  // Window already full: M = 1.
  assert.deepEqual(responseLength(r, opts({ promptTokens: 200, maxModelLen: 100 })), {
    length: 1,
    limit: 1,
    finishReason: "length",
  });
  // M ≥ 20 but small: redraws stay in range.
  for (let i = 0; i < 5000; i++) {
    const res = responseLength(r, opts({ promptTokens: 80, maxModelLen: 105 }));
    assert.ok(res.length >= 1 && res.length <= 25);
  }
});

Deno.test("responseLength: deterministic under a seed", () => {
  const seq = (seed: number) => {
    const r = new Rng(seed);
    const out: number[] = [];
    for (let i = 0; i < 200; i++) out.push(responseLength(r, opts({ maxTokens: 300 })).length);
    return out;
  };
  assert.deepEqual(seq(5), seq(5));
});

Deno.test("randomTokens: exact lengths, sentence text, determinism", () => {
  const r = new Rng(3);
  for (const n of [0, 1, 7, 1000]) {
    const toks = randomTokens(r, n);
    assert.equal(toks.length, n);
    // Re-tokenizing the text gives the same tokens (each sentence ends with its space).
    const text = toks.join("");
    if (n > 0) assert.deepEqual(splitText(text), toks);
  }
  assert.deepEqual(randomTokens(r, -3), []);
  const text = randomTokens(new Rng(9), 1000).join("");
  assert.ok(!text.startsWith(" "));
  assert.ok(SENTENCES.some((s) => text.startsWith(s + " ")));
  assert.deepEqual(randomTokens(new Rng(9), 1000), randomTokens(new Rng(9), 1000));
});

Deno.test("randomText without tokens: same draws, same text and length", () => {
  for (const n of [1, 7, 40, 1000]) {
    const a = randomText(new Rng(99), n);
    const b = randomText(new Rng(99), n, false);
    assert.equal(b.text, a.text);
    assert.equal(b.length, n);
    assert.equal(a.tokens.length, n);
    assert.equal(a.tokens.join(""), a.text);
    assert.deepEqual(b.tokens, []);
  }
});

Deno.test("bucketRange: the reference simulator's bucket edges", () => {
  const ranges = (m: number) => [0, 1, 2, 3, 4].map((i) => bucketRange(m, i));
  // Above 101 the fourth bucket stretches and the fifth holds the 19 values below M.
  assert.deepEqual(ranges(200), [[1, 20], [21, 40], [41, 60], [61, 180], [181, 199]]);
  assert.deepEqual(ranges(102), [[1, 20], [21, 40], [41, 60], [61, 82], [83, 101]]);
  // Up to 101, five equal parts of 1..M-1.
  assert.deepEqual(ranges(101), [[1, 20], [21, 40], [41, 60], [61, 80], [81, 100]]);
  assert.deepEqual(ranges(11), [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]);
});

Deno.test("built-in sentences need no JSON escaping (answers quote them as they are)", () => {
  for (const s of SENTENCES) assert.equal(JSON.stringify(s), `"${s}"`, s);
  // Random text is cut from them and joined with spaces: still nothing to escape.
  const rng = new Rng(7);
  for (const n of [1, 5, 100, 1000]) {
    const { text } = randomText(rng, n, false);
    assert.equal(JSON.stringify(text), `"${text}"`);
  }
});
