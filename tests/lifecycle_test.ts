/**
 * The request lifecycle end to end over HTTP: timing seen by a client,
 * admission waves and 429s, cancellation, P/D, load factor, determinism,
 * seed logging and graceful shutdown.
 *
 * These must hold on a loaded 2-core machine (both cores busy elsewhere, GC
 * pauses, the suite running with --parallel), so timing is asserted as:
 * - the engine's schedule (each step's deadline, read by an observer), which
 *   is exact and free of timer lateness;
 * - as seen by the client, never early: a token cannot arrive before its
 *   deadline, bar the timer queue's due window (lower bounds always hold);
 * - and never late by more than SLOW_MS, which only a stalled machine or a
 *   broken simulator exceeds.
 * How close to its deadline a token arrives is what the benchmark measures
 * (`deno task bench`), not these tests. Waits are for conditions, not sleeps.
 */
import assert from "node:assert/strict";
import type { Engine, Job } from "../lib/engine.ts";
import { DUE_WINDOW_MS } from "../lib/timers.ts";
import { sleep, spawnSim, startSim, type TestServer, waitFor } from "./helpers.ts";

/** How early a token may leave: the timer queue runs deadlines this close at once. */
const EARLY_MS = DUE_WINDOW_MS + 0.01;
/** Upper bounds on timing: configured + this. Far above any lateness but a stalled machine's. */
const SLOW_MS = 1000;
/** How long to wait for a condition that normally holds within milliseconds. */
const WAIT_MS = 5000;
/** A TTFT no test waits for: requests that must stay running or waiting are ended by the test. */
const HOLD = "60s";

const engineOf = (s: TestServer): Engine => s.running.ranks[0].sim.engine;

const completion = (extra: Record<string, unknown> = {}) => ({
  model: "test-model",
  prompt: "hello there",
  ...extra,
});

/** Reads an SSE body, timestamping each data frame (ms since `t0`). */
async function timedFrames(res: Response, t0: number): Promise<{ at: number; data: string }[]> {
  const out: { at: number; data: string }[] = [];
  const dec = new TextDecoder();
  let buf = "";
  for await (const part of res.body!) {
    const at = performance.now() - t0;
    buf += dec.decode(part, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      out.push({ at, data: buf.slice(6, i) });
      buf = buf.slice(i + 2);
    }
  }
  return out;
}

/** `actual` (ms since the request was sent) is not early for `expected`, nor later than SLOW_MS. */
function onSchedule(actual: number, expected: number, what: string): void {
  const msg = `${what}: ${actual.toFixed(1)} ms, expected ${expected.toFixed(1)} (never early)`;
  assert.ok(actual >= expected - EARLY_MS, msg);
  assert.ok(actual <= expected + SLOW_MS, `${msg}, not over ${SLOW_MS} ms late`);
}

/** Each step's deadline, relative to its job's start, and how many jobs ran when it was emitted. */
interface Schedule {
  job: Job;
  offsets: number[];
  running: number[];
}

/**
 * Records the engine's schedule of every job: the deadline of each step (ms
 * after the job started), read when the step is emitted, and the number of
 * running jobs at that moment (which sets the next inter-token gap).
 */
function schedules(e: Engine): Map<Job, Schedule> {
  const all = new Map<Job, Schedule>();
  e.observers.push({
    token(job, k) {
      let s = all.get(job);
      if (!s) all.set(job, s = { job, offsets: [], running: [] });
      s.offsets[k] = job.nextAt - job.phases.start;
      s.running[k] = e.runningCount;
    },
  });
  return all;
}

const near = (actual: number, expected: number, what: string) =>
  assert.ok(Math.abs(actual - expected) < 1e-6, `${what}: ${actual}, expected ${expected}`);

/**
 * Frames as the clients saw them against the engine's schedule: frame k of
 * each stream is on schedule (onSchedule) for its job's step k. Which client
 * stream is which job is not known, so frame k's times of all streams are
 * compared sorted with step k's offsets of all jobs, sorted: if every stream
 * is on schedule for its own job, the i-th smallest of the one is for the
 * i-th smallest of the other. (The client's clock starts before the request
 * reaches the server, so requests admitted at once compare exactly.)
 */
function streamsOnSchedule(streams: number[][], jobs: Schedule[]): void {
  assert.equal(streams.length, jobs.length, "one job per stream");
  const steps = Math.max(...jobs.map((j) => j.offsets.length));
  for (let k = 0; k < steps; k++) {
    const seen = streams.map((f) => f[k]).sort((a, b) => a - b);
    const due = jobs.map((j) => j.offsets[k]).sort((a, b) => a - b);
    seen.forEach((at, i) => onSchedule(at, due[i], `token ${k}`));
  }
}

// ------------------------------------------------------------------ timing

Deno.test("streaming: TTFT and ITL as seen by the client", async () => {
  await using s = await startSim([
    "--time-to-first-token",
    "200ms",
    "--inter-token-latency",
    "30ms",
  ]);
  const sched = schedules(engineOf(s));
  const t0 = performance.now();
  const res = await s.post(
    "/v1/completions",
    completion({ stream: true, max_tokens: 10, ignore_eos: true }),
  );
  assert.equal(res.status, 200);
  const frames = (await timedFrames(res, t0)).filter((f) => f.data !== "[DONE]");
  assert.equal(frames.length, 10);
  // The schedule: the first token TTFT after the request arrived, then one every ITL.
  const [job] = [...sched.values()];
  assert.equal(sched.size, 1);
  assert.equal(job.job.phases.start, job.job.phases.arrival, "admitted at once");
  job.offsets.forEach((o, k) => near(o, 200 + 30 * k, `token ${k} due`));
  // The client gets every token on that schedule: never before it (so
  // neither TTFT nor ITL is cut short), and not unduly late.
  frames.forEach((f, k) => onSchedule(f.at, 200 + 30 * k, `token ${k}`));
});

Deno.test("non-streaming: the answer arrives when the last token would have", async () => {
  await using s = await startSim([
    "--time-to-first-token",
    "100ms",
    "--inter-token-latency",
    "30ms",
  ]);
  const t0 = performance.now();
  const res = await s.post("/v1/completions", completion({ max_tokens: 10, ignore_eos: true }));
  const body = await res.json();
  const took = performance.now() - t0;
  assert.equal(body.usage.completion_tokens, 10);
  onSchedule(took, 100 + 9 * 30, "end-to-end");
});

Deno.test("zero latency: answers at once", async () => {
  await using s = await startSim();
  const e = engineOf(s);
  const bursts: [number, number][] = [];
  e.observers.push({ tokens: (_job, from, to) => void bursts.push([from, to]) });
  const t0 = performance.now();
  const res = await s.post("/v1/completions", completion({ max_tokens: 500, ignore_eos: true }));
  assert.equal((await res.json()).usage.completion_tokens, 500);
  const took = performance.now() - t0;
  // Never paced: the whole answer is emitted in one go, no timer involved.
  assert.deepEqual(bursts, [[0, 500]], "one burst of 500 tokens");
  assert.equal(e.timers.size, 0);
  assert.ok(took < SLOW_MS, `took ${took.toFixed(1)} ms`);
});

// --------------------------------------------------------------- admission

Deno.test("max-num-seqs: requests run in waves", async () => {
  await using s = await startSim([
    "--max-num-seqs",
    "2",
    "--time-to-first-token",
    "100ms",
    "--inter-token-latency",
    "20ms",
  ]);
  const e = engineOf(s);
  let maxRunning = 0;
  e.observers.push({ started: () => void (maxRunning = Math.max(maxRunning, e.runningCount)) });
  const t0 = performance.now();
  const done = await Promise.all(
    Array.from(
      { length: 6 },
      () =>
        s.post("/v1/completions", completion({ max_tokens: 11, ignore_eos: true }))
          .then(async (r) => {
            assert.equal(r.status, 200);
            await r.body?.cancel();
            return performance.now() - t0;
          }),
    ),
  );
  done.sort((a, b) => a - b);
  assert.ok(maxRunning <= 2, `${maxRunning} ran at once`);
  // Each request runs 300 ms (100 + 10 × 20), two at a time: however late
  // the timers, no more than two can be done by 300 ms, four by 600 ms. So
  // two finish at 300 at the earliest, two at 600, two at 900.
  for (let w = 0; w < 3; w++) {
    for (const t of done.slice(2 * w, 2 * w + 2)) {
      onSchedule(t, 300 * (w + 1) - (w + 1) * EARLY_MS, `wave ${w + 1} (${done.map(Math.round)})`);
    }
  }
});

async function assertRateLimited(res: Response) {
  assert.equal(res.status, 429);
  const body = await res.json();
  assert.equal(body.error.type, "RateLimitError");
  assert.equal(body.error.code, 429);
  assert.equal(body.error.param, null);
  assert.equal(body.error.message, "Failed to enqueue request, waiting requests queue is full");
}

Deno.test("a full waiting queue answers 429 at once", async () => {
  await using s = await startSim([
    "--max-num-seqs",
    "1",
    "--max-waiting-queue-length",
    "1",
    "--time-to-first-token",
    HOLD,
  ]);
  const e = engineOf(s);
  let queued = 0;
  e.observers.push({ queued: () => void queued++ });
  const body = completion({ max_tokens: 1 });
  // Streams, so that their headers come at once: the first holds the slot,
  // the second the queue place, until the test lets them go.
  const first = s.post("/v1/completions", { ...body, stream: true });
  await waitFor(() => e.runningCount === 1, WAIT_MS, "first running");
  const second = s.post("/v1/completions", { ...body, stream: true });
  await waitFor(() => e.waitingCount === 1, WAIT_MS, "second waiting");
  const t0 = performance.now();
  const third = await s.post("/v1/completions", body);
  const took = performance.now() - t0;
  await assertRateLimited(third);
  // Refused while the queue was full (nothing could have left it), never queued.
  assert.equal(e.runningCount, 1);
  assert.equal(e.waitingCount, 1);
  assert.equal(queued, 1, "only the second was queued");
  assert.ok(took < SLOW_MS, `refused after ${took.toFixed(1)} ms`);
  // Streaming requests are refused the same way, before any byte is sent.
  await assertRateLimited(
    await s.post("/v1/chat/completions", {
      model: "test-model",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
    }),
  );
  assert.equal(queued, 1);
  assert.equal((await first).status, 200);
  assert.equal((await second).status, 200);
  await (await first).body?.cancel();
  await (await second).body?.cancel();
  await waitFor(() => e.runningCount + e.waitingCount === 0, WAIT_MS, "both let go");
});

Deno.test("max-waiting-queue-length 0: no queueing at all", async () => {
  await using s = await startSim([
    "--max-num-seqs",
    "1",
    "--max-waiting-queue-length",
    "0",
    "--time-to-first-token",
    HOLD,
  ]);
  const e = engineOf(s);
  // A stream holds the slot (its headers come at once) until the test lets it go.
  const first = s.post("/v1/completions", completion({ max_tokens: 1, stream: true }));
  await waitFor(() => e.runningCount === 1, WAIT_MS, "first running");
  await assertRateLimited(await s.post("/v1/completions", completion({ max_tokens: 1 })));
  assert.equal(e.runningCount, 1, "the slot was still taken");
  const r = await first;
  assert.equal(r.status, 200);
  await r.body?.cancel();
  await waitFor(() => e.runningCount === 0, WAIT_MS, "slot freed");
  // With the slot free again, the next request is admitted.
  const again = await s.post("/v1/completions", completion({ max_tokens: 1, stream: true }));
  assert.equal(again.status, 200);
  assert.equal(e.runningCount, 1, "admitted");
  await again.body?.cancel();
  await waitFor(() => e.runningCount === 0, WAIT_MS, "slot freed again");
});

// ------------------------------------------------------------ cancellation

/** Records jobs as they start, the steps each emits, and cancellations. */
function watch(e: Engine) {
  const started: { job: Job; at: number }[] = [];
  const steps = new Map<Job, number[]>();
  const cancelled: { job: Job; wasRunning: boolean }[] = [];
  e.observers.push({
    started(job) {
      started.push({ job, at: performance.now() });
    },
    cancelled(job, wasRunning) {
      cancelled.push({ job, wasRunning });
    },
    token(job, k) {
      let a = steps.get(job);
      if (!a) steps.set(job, a = []);
      a.push(k);
    },
  });
  return { started, steps, cancelled };
}

/**
 * Resolves once the engine's timer queue has run a deadline set after `at`
 * (and after now): anything still pending there for `at` or sooner ran
 * before it. Waiting for that, instead of sleeping, shows that nothing more
 * comes of a cancelled job however slow the machine.
 */
async function timersPast(e: Engine, at: number): Promise<void> {
  let done = false;
  e.timers.at(Math.max(at, performance.now()) + 5, () => done = true);
  await waitFor(() => done, WAIT_MS, "the timer queue to move past the job's next deadline");
}

Deno.test("cancel a running stream: slot freed at once, next starts, no more steps", async () => {
  await using s = await startSim([
    "--max-num-seqs",
    "1",
    "--time-to-first-token",
    "20ms",
    "--inter-token-latency",
    "30ms",
  ]);
  const e = engineOf(s);
  const w = watch(e);
  const ac = new AbortController();
  const res = await fetch(`${s.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(completion({ stream: true, max_tokens: 200, ignore_eos: true })),
    signal: ac.signal,
  });
  const reader = res.body!.getReader();
  await reader.read(); // first token
  await reader.read();
  // A second request queues behind the first.
  const queued = s.post("/v1/completions", completion({ max_tokens: 2, ignore_eos: true }));
  await waitFor(() => e.waitingCount === 1, WAIT_MS, "second queued");
  const job = w.started[0].job;
  const abortedAt = performance.now();
  ac.abort();
  await reader.closed.catch(() => {});
  // Freed at once: long before the 200 tokens (6 s) would have ended it.
  const freedIn = await waitFor(
    () => e.runningCount === 0 || w.started.length === 2,
    WAIT_MS,
    "slot",
  );
  assert.equal(job.state, "cancelled");
  assert.deepEqual(w.cancelled, [{ job, wasRunning: true }]);
  assert.ok(freedIn < SLOW_MS, `slot freed after ${freedIn.toFixed(1)} ms`);
  const stepsAtCancel = w.steps.get(job)!.length;
  assert.ok(stepsAtCancel < job.steps, `${stepsAtCancel} steps of ${job.steps}`);
  // The queued request starts as the slot is freed.
  await waitFor(() => w.started.length === 2, WAIT_MS, "queued request start");
  const startedIn = w.started[1].at - abortedAt;
  assert.ok(startedIn < SLOW_MS, `queued request started after ${startedIn.toFixed(1)} ms`);
  const r = await queued;
  assert.equal(r.status, 200);
  assert.equal((await r.json()).usage.completion_tokens, 2);
  // Nothing more is generated for the closed connection, even once its next
  // step would have been due.
  await timersPast(e, job.nextAt);
  assert.equal(w.steps.get(job)!.length, stepsAtCancel);
  assert.equal(e.runningCount, 0);
  assert.equal(e.timers.size, 0, "no timer left armed");
});

Deno.test("cancel a waiting request: its queue place is freed", async () => {
  await using s = await startSim([
    "--max-num-seqs",
    "1",
    "--max-waiting-queue-length",
    "1",
    "--time-to-first-token",
    HOLD,
  ]);
  const e = engineOf(s);
  const w = watch(e);
  // A stream holds the slot (its headers come at once) until the test lets it go.
  const first = s.post("/v1/completions", completion({ max_tokens: 1, stream: true }));
  await waitFor(() => e.runningCount === 1, WAIT_MS, "first running");
  for (const stream of [false, true]) {
    const ac = new AbortController();
    const waiting = fetch(`${s.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(completion({ max_tokens: 1, stream })),
      signal: ac.signal,
    });
    if (stream) {
      // Headers arrive before the first token, even while waiting.
      const r = await waiting;
      assert.equal(e.waitingCount, 1);
      ac.abort();
      await r.body?.cancel().catch(() => {});
    } else {
      await waitFor(() => e.waitingCount === 1, WAIT_MS, "queued");
      ac.abort();
      await waiting.catch(() => {});
    }
    await waitFor(() => e.waitingCount === 0, WAIT_MS, `queue place freed (stream ${stream})`);
    // Freed by cancelling the waiting request, not by it being admitted.
    assert.equal(w.cancelled.length, stream ? 2 : 1);
    assert.equal(w.cancelled.at(-1)!.wasRunning, false);
    assert.equal(w.started.length, 1, "nothing else started");
    assert.equal(e.runningCount, 1, "the running request is untouched");
  }
  // The freed place can be taken again.
  const third = s.post("/v1/completions", completion({ max_tokens: 1, stream: true }));
  await waitFor(() => e.waitingCount === 1, WAIT_MS, "third queued");
  assert.equal((await first).status, 200);
  assert.equal((await third).status, 200);
  await (await first).body?.cancel();
  await (await third).body?.cancel();
  await waitFor(() => e.runningCount + e.waitingCount === 0, WAIT_MS, "both let go");
});

Deno.test("cancel a running non-streaming request", async () => {
  await using s = await startSim([
    "--time-to-first-token",
    "50ms",
    "--inter-token-latency",
    "20ms",
  ]);
  const e = engineOf(s);
  const w = watch(e);
  const ac = new AbortController();
  const pending = fetch(`${s.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    // 50 + 499 × 20 ms: ~10 s, far longer than the test waits for anything.
    body: JSON.stringify(completion({ max_tokens: 500, ignore_eos: true })),
    signal: ac.signal,
  }).catch((err) => err);
  await waitFor(() => (w.steps.get(w.started[0]?.job)?.length ?? 0) >= 3, WAIT_MS, "tokens");
  ac.abort();
  await pending;
  await waitFor(() => e.runningCount === 0, WAIT_MS, "slot freed");
  const job = w.started[0].job;
  assert.equal(job.state, "cancelled");
  const n = w.steps.get(job)!.length;
  assert.ok(n < job.steps, `${n} steps of ${job.steps}`);
  await timersPast(e, job.nextAt);
  assert.equal(w.steps.get(job)!.length, n, "no steps after cancel");
  assert.equal(e.timers.size, 0, "no timer left armed");
});

// --------------------------------------------------------------------- P/D

Deno.test("P/D prefill side: do_remote_decode gives a normal answer ending remote_decode", async () => {
  await using s = await startSim([
    "--time-to-first-token",
    "100ms",
    "--inter-token-latency",
    "10ms",
  ]);
  for (const path of ["/v1/completions", "/v1/chat/completions", "/inference/v1/generate"]) {
    const t0 = performance.now();
    const res = await s.post(path, {
      model: "test-model",
      ...(path === "/v1/completions"
        ? { prompt: "a b c d e f g h" }
        : path === "/v1/chat/completions"
        ? { messages: [{ role: "user", content: "a b c d e f g h" }] }
        : { token_ids: [1, 2, 3], sampling_params: { max_tokens: 50 } }),
      max_tokens: 50,
      ignore_eos: true,
      kv_transfer_params: { do_remote_decode: true },
    });
    const body = await res.json();
    const took = performance.now() - t0;
    assert.equal(res.status, 200);
    // The whole answer, as the reference gives it: prefill, then 49 more steps.
    onSchedule(took, 100 + 49 * 10, `${path} answered after its last token`);
    assert.equal(body.choices[0].finish_reason, "remote_decode");
    if (path === "/inference/v1/generate") assert.equal(body.choices[0].token_ids.length, 50);
    else assert.equal(body.usage.completion_tokens, 50);
    // The reference's placeholders.
    assert.deepEqual(body.kv_transfer_params, {
      do_remote_decode: false,
      do_remote_prefill: true,
      remote_engine_id: "DUMMY_ID",
      remote_block_ids: ["DUMMY_ID"],
      remote_host: "DUMMY",
      remote_port: 1234,
      tp_size: 1,
    });
  }
  const stream = await s.post("/v1/chat/completions", {
    model: "test-model",
    messages: [{ role: "user", content: "x" }],
    stream: true,
    kv_transfer_params: { do_remote_decode: true },
  });
  assert.equal(stream.status, 400);
  assert.equal((await stream.json()).error.message, "Prefill does not support streaming");
});

Deno.test("P/D prefill side: --use-vllm-kv-transfer-params names this engine and its blocks", async () => {
  await using s = await startSim(["--use-vllm-kv-transfer-params", "--block-size", "8"]);
  const body = await (await s.post("/v1/completions", {
    model: "test-model",
    prompt: Array.from({ length: 17 }, (_, i) => i + 1),
    max_tokens: 5,
    kv_transfer_params: { do_remote_decode: true },
  })).json();
  const kv = body.kv_transfer_params;
  assert.equal(kv.do_remote_prefill, true);
  assert.equal(kv.do_remote_decode, false);
  assert.equal(kv.remote_engine_id, s.running.ranks[0].sim.engineId);
  assert.deepEqual(kv.remote_block_ids, [0, 1, 2]); // 17 prompt tokens, blocks of 8
  assert.equal(typeof kv.remote_host, "string");
  assert.equal(kv.remote_port, s.running.ranks[0].port);
  assert.equal(kv.tp_size, 1);
});

Deno.test("P/D decode side: do_remote_prefill waits kv-cache-transfer-latency, not TTFT", async () => {
  await using s = await startSim([
    "--time-to-first-token",
    "600ms",
    "--kv-cache-transfer-latency",
    "50ms",
  ]);
  const sched = schedules(engineOf(s));
  const req = (kv: Record<string, unknown> | undefined) => {
    const t0 = performance.now();
    return s.post("/v1/completions", completion({ max_tokens: 1, kv_transfer_params: kv }))
      .then(async (r) => {
        assert.equal(r.status, 200);
        const body = await r.json();
        assert.notEqual(body.choices[0].finish_reason, "remote_decode");
        return performance.now() - t0;
      });
  };
  const [remote, local] = await Promise.all([
    req({ do_remote_prefill: true, remote_engine_id: "e", remote_block_ids: [1, 2] }),
    req(undefined),
  ]);
  // The schedule: each first token due its own prefill time after the start.
  const jobs = [...sched.values()];
  assert.equal(jobs.length, 2);
  for (const j of jobs) {
    const remotePrefill = j.job.spec.remotePrefill;
    near(
      j.offsets[0],
      remotePrefill ? 50 : 600,
      remotePrefill ? "remote prefill" : "local prefill",
    );
  }
  // As seen by the client.
  onSchedule(remote, 50, "remote prefill");
  onSchedule(local, 600, "local prefill");
});

// -------------------------------------------------------------- load factor

Deno.test("time-factor-under-load: ITL grows with the number of running requests", async () => {
  await using s = await startSim([
    "--time-factor-under-load",
    "3",
    "--max-num-seqs",
    "3",
    "--inter-token-latency",
    "20ms",
  ]);
  const sched = schedules(engineOf(s));
  /** Runs `concurrent` streams at once; checks them against the schedule, and returns it. */
  const run = async (concurrent: number) => {
    sched.clear();
    const streams = await Promise.all(Array.from({ length: concurrent }, async () => {
      const t0 = performance.now();
      const res = await s.post(
        "/v1/completions",
        completion({ stream: true, max_tokens: 12, ignore_eos: true }),
      );
      const f = (await timedFrames(res, t0)).filter((x) => x.data !== "[DONE]");
      assert.equal(f.length, 12);
      return f.map((x) => x.at);
    }));
    const jobs = [...sched.values()];
    // Every gap is ITL × the load factor for the jobs running when it was
    // drawn: 1 + (3 − 1)(n − 1)/(3 − 1) = n here.
    for (const j of jobs) {
      for (let k = 1; k < j.offsets.length; k++) {
        near(j.offsets[k] - j.offsets[k - 1], 20 * j.running[k - 1], `gap ${k}`);
      }
    }
    streamsOnSchedule(streams, jobs);
    return jobs;
  };
  const single = await run(1);
  assert.ok(single[0].running.every((n) => n === 1));
  single[0].offsets.forEach((o, k) => near(o, 20 * k, `token ${k} due, alone`));
  // Three at once: while all three run, the gaps are 60 ms. (Requests sent
  // together reach the engine together; only a stalled machine could keep
  // one out until another has ended, and then the round is run again.)
  let loaded: Schedule[] = [];
  for (let round = 0; round < 5 && !loaded.some((j) => j.running.includes(3)); round++) {
    loaded = await run(3);
  }
  assert.ok(loaded.some((j) => j.running.includes(3)), "never three running at once");
  const gaps = loaded.flatMap((j) => j.offsets.slice(1).map((o, k) => o - j.offsets[k]));
  assert.ok(gaps.some((g) => Math.abs(g - 60) < 1e-6), `gaps: ${gaps.map(Math.round)}`);
});

// -------------------------------------------------------------- determinism

Deno.test("--seed: the same request sequence gives the same texts, lengths and jitter", async () => {
  const flags = [
    "--seed",
    "42",
    "--time-to-first-token",
    "5ms",
    "--time-to-first-token-std-dev",
    "1ms",
    "--inter-token-latency",
    "2ms",
    "--inter-token-latency-std-dev",
    "0.5ms",
  ];
  const run = async () => {
    await using s = await startSim(flags);
    // Token schedules relative to each request's start, from the engine itself.
    const schedule: number[][] = [];
    engineOf(s).observers.push({
      token(job, k) {
        if (k === 0) schedule.push([]);
        schedule.at(-1)!.push(job.nextAt - job.phases.start);
      },
    });
    const answers: unknown[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await (await s.post("/v1/completions", completion({ max_tokens: 30 }))).json();
      const chat = await (await s.post("/v1/chat/completions", {
        model: "test-model",
        messages: [{ role: "user", content: `question ${i}` }],
        max_tokens: 25,
      })).json();
      answers.push([
        c.choices[0].text,
        c.usage.completion_tokens,
        c.choices[0].finish_reason,
        chat.choices[0].message.content,
        chat.usage.completion_tokens,
      ]);
    }
    return { answers, schedule };
  };
  const a = await run();
  const b = await run();
  assert.deepEqual(a.answers, b.answers);
  const lengths = a.answers.map((x) => (x as number[])[1]);
  assert.ok(new Set(lengths).size > 1, `lengths vary: ${lengths}`);
  assert.equal(a.schedule.length, b.schedule.length);
  for (let i = 0; i < a.schedule.length; i++) {
    assert.equal(a.schedule[i].length, b.schedule[i].length);
    a.schedule[i].forEach((t, k) => assert.ok(Math.abs(t - b.schedule[i][k]) < 1e-6));
  }
  const gaps = a.schedule.flatMap((s) => s.slice(1).map((t, k) => t - s[k]));
  assert.ok(new Set(gaps.map((g) => g.toFixed(6))).size > 10, "ITL draws are jittered");
});

// --------------------------------------------------------------- processes

/** `vllm:num_requests_running` of a child simulator, from its /metrics. */
async function runningOn(port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const m = (await res.text()).match(/^vllm:num_requests_running(?:\{[^}]*\})? (\S+)$/m);
  return m ? Number(m[1]) : NaN;
}

/** Polls an async condition until it holds; fails after `timeoutMs`. */
async function until(cond: () => Promise<boolean>, what: string, timeoutMs = 30000) {
  const t0 = performance.now();
  while (!(await cond())) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

Deno.test("without --seed the seed is logged at start-up", async () => {
  const p = await spawnSim(["--model", "m"]);
  try {
    const line = await p.line(/pass --seed/);
    assert.match(line, /seed=\d+/);
  } finally {
    await p.close();
  }
});

Deno.test("SIGTERM drains an in-flight request, then exits 0", async () => {
  const p = await spawnSim(["--model", "m", "--time-to-first-token", "1s"]);
  const port = Number(new URL(p.url).port);
  try {
    const t0 = performance.now();
    const pending = fetch(`${p.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "m", prompt: "hi", max_tokens: 1 }),
    });
    // SIGTERM once the request is in flight (the child's metrics say so).
    await until(async () => await runningOn(port) === 1, "the request to be running");
    p.child.kill("SIGTERM");
    const res = await pending;
    assert.equal(res.status, 200);
    assert.equal((await res.json()).usage.completion_tokens, 1);
    const took = performance.now() - t0;
    assert.ok(
      took >= 1000 - EARLY_MS,
      `answered after ${took.toFixed(1)} ms, before its full TTFT`,
    );
    const status = await p.child.status;
    assert.equal(status.code, 0);
    await p.line(/draining/);
  } finally {
    await p.close();
  }
});
