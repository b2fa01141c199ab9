/** KV event batches: decoded by an independent decoder, widths checked on the bytes. */
import assert from "node:assert/strict";
import { decode } from "@msgpack/msgpack";
import type { KvEvent } from "./block_manager.ts";
import { encodeBatch } from "./events.ts";
import { MsgpackWriter } from "./msgpack.ts";

const STORED: KvEvent = {
  type: "BlockStored",
  hashes: [18184389114128294025n, 5n],
  parent: null,
  tokens: [1, 2, 70000],
  blockSize: 16,
  loraId: null,
  loraName: null,
};
const LORA_STORED: KvEvent = { ...STORED, parent: 7n, loraId: 2, loraName: "ad1" };
const REMOVED: KvEvent = { type: "BlockRemoved", hash: 0n };
const CLEARED: KvEvent = { type: "AllBlocksCleared" };
const hexOf = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

Deno.test("events: the legacy positional format, 9-element BlockStored", () => {
  const bytes = encodeBatch(
    new MsgpackWriter(),
    1733160000.5,
    [STORED, LORA_STORED, REMOVED, CLEARED],
    3,
    "array",
  );
  assert.deepEqual(decode(bytes, { useBigInt64: true }), [
    1733160000.5,
    [
      ["BlockStored", [18184389114128294025n, 5n], 0n, [1, 2, 70000], 16, null, "GPU", null, null],
      ["BlockStored", [18184389114128294025n, 5n], 7n, [1, 2, 70000], 16, 2, "GPU", "ad1", null],
      ["BlockRemoved", [0n], "GPU"],
      ["AllBlocksCleared"],
    ],
    3,
  ]);
  const hex = hexOf(bytes);
  // The batch: fixarray(3), float64 ts, fixarray(4) of events ... rank 3.
  assert.ok(hex.startsWith("93cb"));
  assert.ok(hex.endsWith("03"));
  // Hashes (also 0 and small ones) are uint64, token ids uint32, whatever their value.
  assert.ok(hex.includes("cf0000000000000005"));
  assert.ok(hex.includes("cf0000000000000000"));
  assert.ok(hex.includes("ce00000001ce00000002ce00011170"));
  // An integral timestamp is still a float64.
  assert.ok(hexOf(encodeBatch(new MsgpackWriter(), 5, [], 0, "array")).startsWith("93cb4014"));
});

Deno.test("events: vLLM's map format, keys in order, nil lora fields left out", () => {
  const bytes = encodeBatch(
    new MsgpackWriter(),
    1.25,
    [STORED, LORA_STORED, REMOVED, CLEARED],
    0,
    "map",
  );
  const [ts, events, rank] = decode(bytes, { useBigInt64: true }) as [
    number,
    Record<string, unknown>[],
    number,
  ];
  assert.equal(ts, 1.25);
  assert.equal(rank, 0);
  assert.deepEqual(Object.keys(events[0]), [
    "type",
    "block_hashes",
    "parent_block_hash",
    "token_ids",
    "block_size",
    "medium",
  ]);
  assert.equal(events[0].parent_block_hash, null);
  assert.deepEqual(Object.keys(events[1]), [
    "type",
    "block_hashes",
    "parent_block_hash",
    "token_ids",
    "block_size",
    "lora_id",
    "medium",
    "lora_name",
  ]);
  assert.deepEqual(events[1], {
    type: "BlockStored",
    block_hashes: [18184389114128294025n, 5n],
    parent_block_hash: 7n,
    token_ids: [1, 2, 70000],
    block_size: 16,
    lora_id: 2,
    medium: "GPU",
    lora_name: "ad1",
  });
  assert.deepEqual(events[2], { type: "BlockRemoved", block_hashes: [0n], medium: "GPU" });
  assert.deepEqual(events[3], { type: "AllBlocksCleared" });
});

Deno.test("msgpack: long strings and arrays use the 8/16/32-bit headers", () => {
  const w = new MsgpackWriter();
  for (const n of [0, 31, 32, 255, 256, 70000]) {
    const s = "é".repeat(n);
    assert.equal(decode(w.reset().str(s).bytes()), s);
  }
  for (const n of [0, 15, 16, 65535, 65536]) {
    w.reset().array(n);
    for (let i = 0; i < n; i++) w.uint(i % 300);
    assert.deepEqual(decode(w.bytes()), Array.from({ length: n }, (_, i) => i % 300));
  }
});
