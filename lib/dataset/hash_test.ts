import assert from "node:assert/strict";
import { promptHash } from "./hash.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

Deno.test("prompt hash: the spec's test vector, and ids as little-endian uint32", async () => {
  assert.equal(
    hex(promptHash([1, 2, 3])),
    "4636993d3e1da4e9d6b8f87b79e8f7c6d018580d52661950eabc3845c5897a4d",
  );
  // Independently: WebCrypto over the bytes written by hand.
  const ids = [0, 255, 256, 65536, 4294967295];
  const bytes = new Uint8Array(
    ids.flatMap((n) => [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24]),
  );
  const web = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  assert.equal(hex(promptHash(ids)), hex(web));
});
