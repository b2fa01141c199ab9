/** The block-wise stop scan against a naive token-by-token reference. */
import assert from "node:assert/strict";
import { RandomTextStream, TokenListStream } from "../content.ts";
import { Rng } from "../rng.ts";
import { BUILTIN_SENTENCES, BuiltinTokenizer } from "../tokenizer/builtin.ts";

const tokenizer = new BuiltinTokenizer();
import { STOP_BLOCK, StopScan } from "./plan.ts";
import type { StopRule } from "./params.ts";

/**
 * The obvious algorithm, vLLM's rules: after each token, a stop token ends the
 * answer (its text left out), else the first stop string in list order found
 * where the token could have completed it.
 */
function naive(rule: StopRule, pieces: string[]) {
  let text = "";
  for (let k = 0; k < pieces.length; k++) {
    const id = tokenizer.pieceIds(pieces[k]).find((x) => rule.tokenIds.includes(x));
    if (id !== undefined) {
      const chars = text.length + (rule.includeStop ? pieces[k].length : 0);
      return { tokens: k + 1, chars, reason: id };
    }
    const before = text.length;
    text += pieces[k];
    let best: { at: number; stop: string } | null = null;
    for (const stop of rule.strings) {
      const at = text.indexOf(stop, Math.max(0, before - stop.length + 1));
      if (at >= 0 && best === null) best = { at, stop }; // the first in list order
    }
    if (best) {
      return {
        tokens: k + 1,
        chars: best.at + (rule.includeStop ? best.stop.length : 0),
        reason: best.stop,
      };
    }
  }
  return null;
}

Deno.test("stop scan: same answers as the naive scan, across block boundaries", () => {
  const rng = new Rng(42);
  for (let trial = 0; trial < 300; trial++) {
    const length = rng.int(1, 6000);
    const stream = new RandomTextStream(new Rng(trial), BUILTIN_SENTENCES);
    const pieces = Array.from({ length }, () => stream.next());
    const text = pieces.join("");
    // Stops cut from the text itself (so they match), some long, some absent.
    const strings: string[] = [];
    for (let i = rng.int(0, 4); i > 0; i--) {
      const straddle = rng.next() < 0.4;
      const len = straddle ? rng.int(30, 300) : rng.int(1, rng.next() < 0.2 ? 1024 : 12);
      // Long stops across the first block boundary, where the overlap matters.
      const at = straddle
        ? Math.max(0, STOP_BLOCK + rng.int(-len + 1, 40))
        : rng.int(0, Math.max(0, text.length - len));
      strings.push(rng.next() < 0.8 ? text.slice(at, at + len) || "q" : "zzz-absent");
    }
    const tokenIds = rng.next() < 0.3
      ? [tokenizer.pieceIds(pieces[rng.int(0, length - 1)])[0]]
      : [];
    const rule: StopRule = { strings, tokenIds, includeStop: rng.next() < 0.5 };
    const got = new StopScan(rule, tokenizer).run(new TokenListStream(pieces), length);
    assert.deepEqual(got, naive(rule, pieces), `trial ${trial}`);
  }
  assert.ok(STOP_BLOCK < 6000 * 4, "the trials cross block boundaries");
});
