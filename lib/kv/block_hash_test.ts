/** Block hashing against the spec's test vectors and cborg as the CBOR oracle. */
import assert from "node:assert/strict";
import { encode } from "cborg";
import { Rng } from "../rng.ts";
import { CborWriter } from "./cbor.ts";
import { BlockHasher, fnv1a64, hex } from "./block_hash.ts";

const TOKENS = Array.from({ length: 32 }, (_, i) => i + 1);
const big = ([hi, lo]: [number, number]) => (BigInt(hi) << 32n) | BigInt(lo);

Deno.test("fnv64a-cbor: the spec's vectors", () => {
  assert.equal(big(fnv1a64(new TextEncoder().encode(""))), 14695981039346656037n);
  assert.equal(big(fnv1a64(new TextEncoder().encode("42"))), 571532774284038691n);
  assert.equal(big(new BlockHasher("fnv64a-cbor", "").root("my-model")), 14348361244533327956n);
  assert.equal(big(new BlockHasher("fnv64a-cbor", "42").root("my-model")), 16720364374450869073n);
  const wires = (
    seed: string,
    model: string,
    mm?: { offset: number; length: number; hash: string }[],
  ) => new BlockHasher("fnv64a-cbor", seed).hashes(TOKENS, 16, model, { mm }).map((b) => b.wire);
  assert.deepEqual(wires("", "my-model"), [18184389114128294025n, 10537991018676517940n]);
  assert.deepEqual(wires("42", "my-model"), [14693490040996468805n, 5095726257272963669n]);
  assert.deepEqual(wires("", "lora1"), [10086124571020399255n, 11682284702323923491n]);
  assert.deepEqual(
    wires("", "my-model", [{ offset: 0, length: 16, hash: "sim_img_0_1" }]),
    [3178768046534520070n, 819202263941331483n],
  );
  // A trailing partial block is not hashed.
  assert.equal(new BlockHasher("fnv64a-cbor", "").hashes(TOKENS.slice(0, 31), 16, "m").length, 1);
});

Deno.test("sha256_cbor: the spec's vectors", () => {
  assert.equal(
    hex(new BlockHasher("sha256_cbor", "42").noneHash),
    "9fa6eb003f14425eb9c8e6baacfbcaab26257357b829c7bfa74ffcc4f31c1780",
  );
  assert.equal(
    hex(new BlockHasher("sha256_cbor", "").noneHash),
    "8d33f520a3c4cef80d2453aef81b612bfe1cb44c8b2025630ad38662763f13d3",
  );
  const wires = (seed: string, lora?: string) =>
    new BlockHasher("sha256_cbor", seed).hashes(TOKENS, 16, "my-model", { lora }).map((b) =>
      b.wire
    );
  assert.deepEqual(wires("42"), [16300212363532267629n, 8671309795006503672n]);
  assert.deepEqual(wires(""), [3304056276748800391n, 17643853483570299582n]);
  assert.deepEqual(wires("42", "lora1"), [15852514201477661231n, 5291281311321690375n]);
});

Deno.test("cbor: the writer's bytes are cborg's canonical bytes", () => {
  const w = new CborWriter();
  assert.equal(
    hex(w.reset().array(3).uint(1).array(3).uint(1).uint(2).uint(3).null().bytes()),
    "830183010203f6",
  );
  const rng = new Rng(5);
  for (let i = 0; i < 500; i++) {
    const ints = Array.from({ length: rng.int(0, 40) }, () => {
      const k = rng.int(0, 4);
      return k === 0
        ? rng.int(0, 23)
        : k === 1
        ? rng.int(24, 255)
        : k === 2
        ? rng.int(256, 65535)
        : k === 3
        ? rng.int(65536, 0xffffffff)
        : rng.int(0, Number.MAX_SAFE_INTEGER);
    });
    const hi = rng.int(0, 0xffffffff);
    const lo = rng.int(0, 0xffffffff);
    const text = "ü".repeat(rng.int(0, 30)) + "x".repeat(rng.int(0, 300));
    w.reset().array(4).uint64(hi, lo).array(ints.length);
    for (const x of ints) w.uint(x);
    w.map(1).text("Hash").text(text);
    w.bytesOf(new Uint8Array([1, 2, 3]));
    const expected = encode([
      (BigInt(hi) << 32n) | BigInt(lo),
      ints,
      { Hash: text },
      new Uint8Array([1, 2, 3]),
    ]);
    assert.equal(hex(w.bytes()), hex(expected));
  }
});
