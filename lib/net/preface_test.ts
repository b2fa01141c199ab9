import assert from "node:assert/strict";
import { classify, H2_PREFACE } from "./preface.ts";

const enc = new TextEncoder();

Deno.test("preface: the whole preface is h2, a strict prefix needs more, a difference is http1", () => {
  assert.equal(classify(H2_PREFACE), "h2");
  const withFrame = new Uint8Array([...H2_PREFACE, 0, 0, 0, 4, 0, 0, 0, 0, 0]);
  assert.equal(classify(withFrame), "h2");
  for (let n = 0; n < H2_PREFACE.length; n++) {
    assert.equal(classify(H2_PREFACE.subarray(0, n)), "more", `${n} bytes`);
  }
  assert.equal(classify(enc.encode("POST /v1/completions HTTP/1.1\r\n")), "http1");
  assert.equal(classify(enc.encode("PRI * HTTP/1.1\r\n")), "http1");
  assert.equal(classify(enc.encode("P")), "more");
  assert.equal(classify(enc.encode("G")), "http1");
  // Only the first `length` bytes of a larger buffer count.
  const buf = new Uint8Array(64);
  buf.set(H2_PREFACE.subarray(0, 10));
  assert.equal(classify(buf, 10), "more");
});
