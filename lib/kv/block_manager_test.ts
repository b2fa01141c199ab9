/** The prefix cache's rules (kv-cache.md, "Cache behaviour"), with an injected clock. */
import assert from "node:assert/strict";
import { BlockHasher } from "./block_hash.ts";
import { BlockManager, type KvEvent, type KvPrompt } from "./block_manager.ts";

const BS = 4;
const hasher = new BlockHasher("fnv64a-cbor", "");

function prompt(tokens: number[], model = "m", lora: KvPrompt["lora"] = null): KvPrompt {
  return { model, blocks: hasher.hashes(tokens, BS, model), tokens, lora };
}

function setup(capacity: number, loaded: (m: string) => boolean = () => true) {
  const events: KvEvent[] = [];
  let t = 0;
  const cache = new BlockManager(capacity, BS, loaded, (e) => events.push(e), () => t);
  return { cache, events, tick: () => ++t };
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

Deno.test("kv: a repeated prompt hits its leading run; BlockStored names the rest", () => {
  const { cache, events } = setup(10);
  const a = prompt(range(1, 9)); // two full blocks, one token left over
  assert.equal(a.blocks.length, 2);
  const h1 = cache.take(a);
  assert.equal(h1.cachedTokens, 0);
  assert.equal(cache.used, 2);
  assert.deepEqual(events, [{
    type: "BlockStored",
    hashes: a.blocks.map((b) => b.wire),
    parent: null,
    tokens: range(1, 8),
    blockSize: BS,
    loraId: null,
    loraName: null,
  }]);
  cache.give(h1);
  assert.equal(cache.used, 0);
  assert.equal(cache.size, 2);
  // Same prefix, one more block: two cached blocks, one stored with its parent.
  const b = prompt(range(1, 12));
  assert.equal(cache.cachedTokens(b), 8);
  const h2 = cache.take(b);
  assert.equal(h2.cachedTokens, 8);
  assert.deepEqual(events.at(-1), {
    type: "BlockStored",
    hashes: [b.blocks[2].wire],
    parent: b.blocks[1].wire,
    tokens: range(9, 4),
    blockSize: BS,
    loraId: null,
    loraName: null,
  });
  // Fully cached: no event.
  const n = events.length;
  cache.take(prompt(range(1, 8)));
  assert.equal(events.length, n);
  assert.equal(cache.used, 3);
});

Deno.test("kv: only the leading run counts; a different model is a different cache", () => {
  const { cache } = setup(10);
  cache.give(cache.take(prompt(range(1, 8))));
  // Block 0 differs, so block 1's hash differs too (chained): nothing cached.
  assert.equal(cache.cachedTokens(prompt([99, 2, 3, 4, 5, 6, 7, 8])), 0);
  assert.equal(cache.cachedTokens(prompt(range(1, 8), "lora1")), 0);
  const l = cache.take(prompt(range(1, 8), "lora1", { id: 1, name: "lora1" }));
  assert.equal(l.cachedTokens, 0);
  assert.equal(cache.size, 4);
});

Deno.test("kv: fits counts only blocks not already used; full → idle blocks evicted oldest first", () => {
  const { cache, events, tick } = setup(3);
  const a = cache.take(prompt(range(1, 4))); // A
  tick();
  const b = cache.take(prompt(range(101, 4))); // B
  tick();
  const c = cache.take(prompt(range(201, 4))); // C
  assert.equal(cache.used, 3);
  const d = prompt(range(301, 4));
  assert.equal(cache.fits(d), false);
  // A running request's own blocks need no room.
  assert.equal(cache.fits(prompt(range(1, 4))), true);
  tick();
  cache.give(b);
  tick();
  cache.give(a);
  assert.equal(cache.fits(d), true);
  const before = events.length;
  const hd = cache.take(d);
  // B went idle first: it is evicted, and its BlockRemoved precedes D's BlockStored.
  assert.deepEqual(events.slice(before).map((e) => e.type), ["BlockRemoved", "BlockStored"]);
  assert.equal((events[before] as { hash: bigint }).hash, prompt(range(101, 4)).blocks[0].wire);
  assert.equal(cache.size, 3);
  cache.give(hd);
  cache.give(c);
  // A prompt with more blocks than the cache can ever hold.
  assert.equal(cache.canEverFit(prompt(range(1, 16))), false);
  assert.equal(cache.canEverFit(prompt(range(1, 12))), true);
});

Deno.test("kv: idle blocks of unloaded models go first, whatever their age", () => {
  const loaded = new Set(["m"]);
  const { cache, events, tick } = setup(2, (m) => loaded.has(m));
  cache.give(cache.take(prompt(range(1, 4), "m"))); // older, loaded
  tick();
  cache.give(cache.take(prompt(range(1, 4), "gone"))); // newer, not loaded
  tick();
  cache.take(prompt(range(50, 4), "m"));
  const removed = events.filter((e) => e.type === "BlockRemoved");
  assert.deepEqual(removed, [{
    type: "BlockRemoved",
    hash: prompt(range(1, 4), "gone").blocks[0].wire,
  }]);
});

Deno.test("kv: clear (sleep) empties, announces, disables; old holds give back nothing", () => {
  const { cache, events } = setup(4);
  const h = cache.take(prompt(range(1, 8)));
  cache.clear();
  assert.deepEqual(events.at(-1), { type: "AllBlocksCleared" });
  assert.equal(cache.size, 0);
  assert.equal(cache.used, 0);
  cache.give(h); // from before the clear
  assert.equal(cache.used, 0);
  // Disabled: nothing stored, nothing cached, everything fits.
  const n = events.length;
  const off = cache.take(prompt(range(1, 8)));
  assert.equal(off.cachedTokens, 0);
  assert.equal(events.length, n);
  assert.equal(cache.fits(prompt(range(1, 40))), true);
  cache.enable();
  assert.equal(cache.take(prompt(range(1, 8))).cachedTokens, 0);
  assert.equal(cache.size, 2);
});

Deno.test("kv: LoRA requests carry lora_id and lora_name", () => {
  const { cache, events } = setup(4);
  cache.take(prompt(range(1, 4), "ad", { id: 2, name: "ad" }));
  const e = events[0] as Extract<KvEvent, { type: "BlockStored" }>;
  assert.equal(e.loraId, 2);
  assert.equal(e.loraName, "ad");
});
