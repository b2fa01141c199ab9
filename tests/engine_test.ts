/** lib/engine.ts: the request lifecycle without HTTP. */
import assert from "node:assert/strict";
import { loadConfig } from "../lib/config.ts";
import { Engine, type JobSpec } from "../lib/engine.ts";
import { Rng } from "../lib/rng.ts";
import { waitFor } from "./helpers.ts";

Deno.test("a request admitted at once is timed from its arrival, not from submit()", async () => {
  const { config: cfg } = loadConfig(["--model", "m", "--time-to-first-token", "60ms"], {});
  const engine = new Engine(() => cfg);
  const spec: JobSpec = {
    lora: null,
    promptTokens: 5,
    cachedTokens: 0,
    lengths: [3],
    finishReasons: ["length"],
    remotePrefill: false,
    maxTokensParam: 3,
    cfg,
    rng: new Rng(1),
  };
  // The router saw the request 40 ms before its body was read and planned.
  const submitted = performance.now();
  const arrival = submitted - 40;
  let first = NaN;
  const job = engine.submit(spec, {
    onStep(_job, k) {
      if (k === 0) first = performance.now();
    },
    onDone() {},
  }, arrival);
  await waitFor(() => job.state === "done", 2000, "the job to finish");
  assert.equal(job.phases.arrival, arrival);
  assert.equal(job.phases.start, arrival, "admitted at once: no queue time");
  assert.ok(first - arrival >= 58, `first token ${first - arrival} ms after arrival`);
  // 20 ms after submit() (timer lateness allowed), not 60.
  assert.ok(first - submitted < 45, `first token ${first - submitted} ms after submit()`);
  engine.timers.clear(); // lets go of the process's alarm worker
});
