import assert from "node:assert/strict";
import { embeddingJson, embeddingVector } from "./embeddings.ts";

Deno.test("embeddingJson writes exactly JSON.stringify of the vector", () => {
  const inputs = [[], [1], [5, 1025, 77777777, 3], Array.from({ length: 500 }, (_, i) => i * 7919)];
  for (const ids of inputs) {
    for (const d of [1, 3, 384, 1000]) {
      assert.equal(embeddingJson(ids, d), JSON.stringify(Array.from(embeddingVector(ids, d))));
    }
  }
});
