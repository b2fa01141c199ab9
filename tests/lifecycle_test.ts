/**
 * The request lifecycle end to end over HTTP: timing seen by a client,
 * admission waves and 429s, cancellation, P/D, load factor, determinism,
 * seed logging and graceful shutdown. Tolerances are generous: these must
 * hold on a loaded 2-core machine (the benchmark measures accuracy).
 */
import assert from "node:assert/strict";
import type { Engine, Job } from "../lib/engine.ts";
import { sleep, startSim, type TestServer, waitFor } from "./helpers.ts";

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

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const within = (actual: number, expected: number, tol: number, what: string) =>
  assert.ok(
    Math.abs(actual - expected) <= tol,
    `${what}: ${actual.toFixed(1)} ms, expected ${expected} ± ${tol}`,
  );

// ------------------------------------------------------------------ timing

Deno.test("streaming: TTFT and ITL as seen by the client", async () => {
  await using s = await startSim([
    "--time-to-first-token",
    "200ms",
    "--inter-token-latency",
    "30ms",
  ]);
  const t0 = performance.now();
  const res = await s.post(
    "/v1/completions",
    completion({ stream: true, max_tokens: 10, ignore_eos: true }),
  );
  assert.equal(res.status, 200);
  const frames = (await timedFrames(res, t0)).filter((f) => f.data !== "[DONE]");
  assert.equal(frames.length, 10);
  within(frames[0].at, 200, 80, "TTFT");
  within(frames[9].at, 200 + 9 * 30, 100, "last token");
  const gaps = frames.slice(1).map((f, i) => f.at - frames[i].at);
  within(median(gaps), 30, 12, "median ITL");
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
  within(took, 100 + 9 * 30, 100, "end-to-end");
});

Deno.test("zero latency: answers at once", async () => {
  await using s = await startSim();
  const t0 = performance.now();
  const res = await s.post("/v1/completions", completion({ max_tokens: 500, ignore_eos: true }));
  assert.equal((await res.json()).usage.completion_tokens, 500);
  assert.ok(performance.now() - t0 < 150, `took ${performance.now() - t0} ms`);
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
  // Each request takes ~300 ms: two finish near 300, two near 600, two near 900.
  for (let w = 0; w < 3; w++) {
    for (const t of done.slice(2 * w, 2 * w + 2)) within(t, 300 * (w + 1), 120, `wave ${w + 1}`);
  }
  assert.ok(done[2] - done[1] > 150 && done[4] - done[3] > 150, `waves: ${done.map(Math.round)}`);
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
    "300ms",
  ]);
  const e = engineOf(s);
  const body = completion({ max_tokens: 1 });
  const first = s.post("/v1/completions", body);
  await waitFor(() => e.runningCount === 1, 1000, "first running");
  const second = s.post("/v1/completions", body);
  await waitFor(() => e.waitingCount === 1, 1000, "second waiting");
  const t0 = performance.now();
  const third = await s.post("/v1/completions", body);
  assert.ok(performance.now() - t0 < 150, "refused at once");
  await assertRateLimited(third);
  // Streaming requests are refused the same way, before any byte is sent.
  await assertRateLimited(
    await s.post("/v1/chat/completions", {
      model: "test-model",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
    }),
  );
  assert.equal((await first).status, 200);
  assert.equal((await second).status, 200);
  await (await first).body?.cancel();
  await (await second).body?.cancel();
});

Deno.test("max-waiting-queue-length 0: no queueing at all", async () => {
  await using s = await startSim([
    "--max-num-seqs",
    "1",
    "--max-waiting-queue-length",
    "0",
    "--time-to-first-token",
    "200ms",
  ]);
  const first = s.post("/v1/completions", completion({ max_tokens: 1 }));
  await waitFor(() => engineOf(s).runningCount === 1, 1000, "first running");
  await assertRateLimited(await s.post("/v1/completions", completion({ max_tokens: 1 })));
  const r = await first;
  assert.equal(r.status, 200);
  await r.body?.cancel();
  // With the slot free again, the next request is admitted.
  const again = await s.post("/v1/completions", completion({ max_tokens: 1 }));
  assert.equal(again.status, 200);
  await again.body?.cancel();
});

// ------------------------------------------------------------ cancellation

/** Records jobs as they start and the steps each emits, with timestamps. */
function watch(e: Engine) {
  const started: { job: Job; at: number }[] = [];
  const steps = new Map<Job, number[]>();
  e.observers.push({
    started(job) {
      started.push({ job, at: performance.now() });
    },
    token(job, k) {
      let a = steps.get(job);
      if (!a) steps.set(job, a = []);
      a.push(k);
    },
  });
  return { started, steps };
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
  await waitFor(() => e.waitingCount === 1, 1000, "second queued");
  const job = w.started[0].job;
  const abortedAt = performance.now();
  ac.abort();
  await reader.closed.catch(() => {});
  const freedIn = await waitFor(() => e.runningCount === 0 || w.started.length === 2, 500, "slot");
  assert.ok(freedIn < 100, `slot freed after ${freedIn.toFixed(1)} ms`);
  assert.equal(job.state, "cancelled");
  const stepsAtCancel = w.steps.get(job)!.length;
  assert.ok(stepsAtCancel < 20, `${stepsAtCancel} steps`);
  // The queued request starts right away.
  await waitFor(() => w.started.length === 2, 500, "queued request start");
  assert.ok(w.started[1].at - abortedAt < 100, "queued request started promptly");
  const r = await queued;
  assert.equal(r.status, 200);
  assert.equal((await r.json()).usage.completion_tokens, 2);
  // Nothing more is generated for the closed connection.
  await sleep(120);
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
    "400ms",
  ]);
  const e = engineOf(s);
  const first = s.post("/v1/completions", completion({ max_tokens: 1 }));
  await waitFor(() => e.runningCount === 1, 1000, "first running");
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
      await waitFor(() => e.waitingCount === 1, 1000, "queued");
      ac.abort();
      await waiting.catch(() => {});
    }
    await waitFor(() => e.waitingCount === 0, 100, `queue place freed (stream ${stream})`);
    assert.equal(e.runningCount, 1, "the running request is untouched");
  }
  // The freed place can be taken again.
  const third = s.post("/v1/completions", completion({ max_tokens: 1 }));
  await waitFor(() => e.waitingCount === 1, 1000, "third queued");
  assert.equal((await first).status, 200);
  assert.equal((await third).status, 200);
  await (await first).body?.cancel();
  await (await third).body?.cancel();
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
    body: JSON.stringify(completion({ max_tokens: 100, ignore_eos: true })),
    signal: ac.signal,
  }).catch((err) => err);
  await waitFor(() => (w.steps.get(w.started[0]?.job)?.length ?? 0) >= 3, 1000, "tokens");
  ac.abort();
  await pending;
  await waitFor(() => e.runningCount === 0, 100, "slot freed");
  const job = w.started[0].job;
  assert.equal(job.state, "cancelled");
  const n = w.steps.get(job)!.length;
  await sleep(80);
  assert.equal(w.steps.get(job)!.length, n, "no steps after cancel");
});

// --------------------------------------------------------------------- P/D

Deno.test("P/D prefill side: do_remote_decode answers after prefill with remote_decode", async () => {
  await using s = await startSim([
    "--time-to-first-token",
    "100ms",
    "--inter-token-latency",
    "50ms",
  ]);
  for (const path of ["/v1/completions", "/v1/chat/completions"]) {
    const t0 = performance.now();
    const res = await s.post(path, {
      model: "test-model",
      ...(path === "/v1/completions"
        ? { prompt: "a b c d e f g h" }
        : { messages: [{ role: "user", content: "a b c d e f g h" }] }),
      max_tokens: 50,
      ignore_eos: true,
      kv_transfer_params: { do_remote_decode: true },
    });
    const body = await res.json();
    const took = performance.now() - t0;
    assert.equal(res.status, 200);
    within(took, 100, 80, `${path} answered after prefill only`);
    assert.equal(body.choices[0].finish_reason, "remote_decode");
    assert.equal(body.usage.completion_tokens, 1);
    const kv = body.kv_transfer_params;
    assert.ok(kv, "kv_transfer_params returned");
    assert.equal(kv.do_remote_prefill, true);
    assert.equal(kv.do_remote_decode, false);
    assert.equal(typeof kv.remote_engine_id, "string");
    assert.ok(kv.remote_engine_id.length > 0);
    assert.ok(Array.isArray(kv.remote_block_ids) && kv.remote_block_ids.length > 0);
    assert.ok(kv.remote_block_ids.every((b: unknown) => Number.isInteger(b)));
    assert.equal(typeof kv.remote_host, "string");
    assert.equal(kv.remote_port, s.running.ranks[0].port);
    assert.equal(kv.tp_size, 1);
  }
});

Deno.test("P/D decode side: do_remote_prefill waits kv-cache-transfer-latency, not TTFT", async () => {
  await using s = await startSim([
    "--time-to-first-token",
    "600ms",
    "--kv-cache-transfer-latency",
    "50ms",
  ]);
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
  within(remote, 50, 60, "remote prefill");
  within(local, 600, 120, "local prefill");
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
  const itlOf = async (concurrent: number) => {
    const runs = await Promise.all(Array.from({ length: concurrent }, async () => {
      const t0 = performance.now();
      const res = await s.post(
        "/v1/completions",
        completion({ stream: true, max_tokens: 12, ignore_eos: true }),
      );
      const f = (await timedFrames(res, t0)).filter((x) => x.data !== "[DONE]");
      return f.slice(1).map((x, i) => x.at - f[i].at);
    }));
    // The middle of each stream, when all of them are running.
    return median(runs.flatMap((g) => g.slice(2, -2)));
  };
  const single = await itlOf(1);
  const loaded = await itlOf(3);
  within(single, 20, 8, "single-stream ITL");
  within(loaded, 60, 15, "ITL with 3 of 3 running");
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

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Runs main.ts and returns the child plus a reader of its stderr lines. */
function spawnSim(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", ...args],
    cwd: new URL("..", import.meta.url),
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const done = (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const part of child.stderr) {
      buf += dec.decode(part, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    }
  })();
  const line = async (re: RegExp, timeoutMs = 15000) => {
    const t0 = performance.now();
    for (;;) {
      const hit = lines.find((l) => re.test(l));
      if (hit) return hit;
      if (performance.now() - t0 > timeoutMs) throw new Error(`no ${re} in:\n${lines.join("\n")}`);
      await sleep(20);
    }
  };
  return { child, line, done };
}

Deno.test("without --seed the seed is logged at start-up", async () => {
  const port = freePort();
  const p = spawnSim(["--model", "m", "--port", String(port)]);
  try {
    const line = await p.line(/pass --seed/);
    assert.match(line, /seed=\d+/);
  } finally {
    p.child.kill("SIGKILL");
    await p.child.status;
    await p.done;
  }
});

Deno.test("SIGTERM drains an in-flight request, then exits 0", async () => {
  const port = freePort();
  const p = spawnSim(["--model", "m", "--port", String(port), "--time-to-first-token", "1s"]);
  try {
    await p.line(/listening/);
    const t0 = performance.now();
    const pending = fetch(`http://127.0.0.1:${port}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "m", prompt: "hi", max_tokens: 1 }),
    });
    await sleep(200);
    p.child.kill("SIGTERM");
    const res = await pending;
    assert.equal(res.status, 200);
    assert.equal((await res.json()).usage.completion_tokens, 1);
    assert.ok(performance.now() - t0 >= 900, "answered after its full TTFT");
    const status = await p.child.status;
    assert.equal(status.code, 0);
    await p.line(/draining/);
  } finally {
    try {
      p.child.kill("SIGKILL");
    } catch { /* already exited */ }
    await p.child.status;
    await p.done;
  }
});
