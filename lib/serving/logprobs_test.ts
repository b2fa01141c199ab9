import assert from "node:assert/strict";
import { chatLogprob, completionTop, responsesLogprob } from "./logprobs.ts";

/** The entries as JSON.stringify writes the spec's objects: the fast writers must match. */
const value = (pos: number, alt: number) => -1.0 - (pos % 3) * 0.1 - alt * 0.5;
const bytes = (s: string) => Array.from(new TextEncoder().encode(s));
const naive = (token: string, pos: number, alt: number) => {
  const t = alt === 0 ? token : `${token}_${alt}`;
  return { token: t, logprob: value(pos, alt), bytes: bytes(t) };
};

Deno.test("logprob entries equal a naive JSON.stringify of the spec's objects", () => {
  const tokens = ["The ", "café", '"q"\\', "a\nb", "😀", "</x>", "x", "\u2028"];
  for (const token of tokens) {
    for (const k of [0, 1, 2, 11, 20]) {
      for (const pos of [0, 1, 2, 5]) {
        const top = Array.from({ length: k }, (_, j) => naive(token, pos, j));
        const chat = k > 0 ? { ...naive(token, pos, 0), top_logprobs: top } : naive(token, pos, 0);
        assert.equal(chatLogprob(token, pos, k), JSON.stringify(chat), `${token} ${k} ${pos}`);
        assert.equal(
          responsesLogprob(token, pos, k),
          JSON.stringify({ ...naive(token, pos, 0), top_logprobs: top }),
        );
        // Completions: a map whose keys come in UTF-8 byte order.
        const map = JSON.parse(completionTop(token, pos, Math.max(k, 1)));
        assert.equal(map[token], value(pos, 0));
        const keys = Object.keys(JSON.parse(completionTop(token, pos, Math.max(k, 1))));
        assert.equal(keys.length, Math.max(k, 1));
      }
    }
  }
});
