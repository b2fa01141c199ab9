/** lib/alarm.ts: sub-millisecond wake-ups from a worker thread, shared by timer queues. */
import assert from "node:assert/strict";
import { Alarm } from "../lib/alarm.ts";
import { TimerQueue } from "../lib/timers.ts";
import { waitFor } from "./helpers.ts";

/** Schedules `n` deadlines `gap` ms apart on `q`; resolves with each one's lateness (ms). */
function runDeadlines(q: TimerQueue, n: number, gap: number): Promise<number[]> {
  const t0 = performance.now() + 2;
  const late: number[] = [];
  return new Promise((resolve) => {
    for (let i = 0; i < n; i++) {
      // Fractional offsets: whole-millisecond timers cannot hit these.
      const at = t0 + i * gap + 0.37;
      q.at(at, () => {
        late.push(performance.now() - at);
        if (late.length === n) resolve(late);
      });
    }
  });
}

Deno.test("the alarm wakes the queue for each deadline, none early", async () => {
  const alarm = new Alarm();
  const q = new TimerQueue({ alarm });
  try {
    // The worker starts with the first deadline; until it runs, setTimeout does.
    await runDeadlines(q, 1, 0);
    await waitFor(() => alarm.ready, 5000, "the alarm's worker to start");
    const before = alarm.wakeUps;
    const late = await runDeadlines(q, 20, 3);
    // Deadlines 3 ms apart need a wake-up each (a slow machine may merge some).
    assert.ok(alarm.wakeUps - before >= 10, `${alarm.wakeUps - before} wake-ups for 20 deadlines`);
    for (const l of late) assert.ok(l > -0.3, `ran ${-l} ms early`);
    late.sort((a, b) => a - b);
    assert.ok(late[10] < 1, `median lateness ${late[10]} ms`);
  } finally {
    q.clear();
  }
  assert.equal(alarm.running, false, "the worker stops with its last queue");
});

Deno.test("queues share one worker; it stops with the last and starts again", async () => {
  const alarm = new Alarm();
  const a = new TimerQueue({ alarm });
  const b = new TimerQueue({ alarm });
  try {
    await Promise.all([runDeadlines(a, 1, 0), runDeadlines(b, 1, 0)]);
    await waitFor(() => alarm.ready, 5000, "the alarm's worker to start");
    await Promise.all([runDeadlines(a, 10, 1.5), runDeadlines(b, 10, 1.1)]);
    a.clear();
    assert.equal(alarm.running, true, "b still uses it");
    await runDeadlines(b, 5, 1);
    b.clear();
    assert.equal(alarm.running, false);
    // Used again: a new worker, and deadlines still run.
    await runDeadlines(a, 3, 1);
    await waitFor(() => alarm.ready, 5000, "a new worker to start");
    const before = alarm.wakeUps;
    await runDeadlines(a, 5, 3);
    assert.ok(alarm.wakeUps > before, "the new worker wakes the queue");
  } finally {
    a.clear();
    b.clear();
  }
  assert.equal(alarm.running, false);
});

Deno.test("if the worker fails, queues go on with setTimeout", async () => {
  const alarm = new Alarm("throw new Error('no worker today');");
  const q = new TimerQueue({ alarm });
  try {
    const late = await runDeadlines(q, 10, 2);
    assert.equal(late.length, 10);
    await waitFor(() => !alarm.running, 5000, "the failed worker to be dropped");
    assert.equal(alarm.ready, false);
    // After the failure, deadlines still run (and the alarm is not retried).
    assert.equal((await runDeadlines(q, 5, 2)).length, 5);
    assert.equal(alarm.running, false);
    assert.equal(alarm.wakeUps, 0);
  } finally {
    q.clear();
  }
});
