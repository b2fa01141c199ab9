/** lib/engine.ts: the request lifecycle without HTTP. */
import assert from "node:assert/strict";
import { loadConfig } from "../lib/config.ts";
import { Engine, type JobSpec } from "../lib/engine.ts";
import { Rng } from "../lib/rng.ts";
import { DUE_WINDOW_MS } from "../lib/timers.ts";
import { waitFor } from "./helpers.ts";

Deno.test("a request admitted at once is timed from its arrival, not from submit()", async () => {
  // TTFT 2 s, arrival 1.98 s before submit(): the first token is due 20 ms
  // after submit(), or 2 s after it if the engine timed the request from
  // submit(). The gap is wide enough to tell the two apart on any machine.
  const { config: cfg } = loadConfig(["--model", "m", "--time-to-first-token", "2s"], {});
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
  // The router saw the request 1 980 ms before its body was read and planned.
  const submitted = performance.now();
  const arrival = submitted - 1980;
  let first = NaN;
  let firstDeadline = NaN;
  engine.observers.push({
    token(job, k) {
      if (k === 0) firstDeadline = job.nextAt;
    },
  });
  try {
    const job = engine.submit(spec, {
      onStep(_job, k) {
        if (k === 0) first = performance.now();
      },
      onDone() {},
    }, arrival);
    await waitFor(() => job.state === "done", 10000, "the job to finish");
    assert.equal(job.phases.arrival, arrival);
    assert.equal(job.phases.start, arrival, "admitted at once: no queue time");
    // The schedule itself, free of timer lateness: TTFT counted from arrival.
    assert.equal(firstDeadline, arrival + 2000, "first token due TTFT after arrival");
    // As observed: never before its deadline (bar the queue's due window)...
    assert.ok(
      first >= firstDeadline - DUE_WINDOW_MS,
      `first token ${first - arrival} ms after arrival`,
    );
    // ...and 20 ms after submit() (however late the timer), not 2 000.
    assert.ok(first - submitted < 1000, `first token ${first - submitted} ms after submit()`);
  } finally {
    engine.timers.clear(); // lets go of the process's alarm worker
  }
});
