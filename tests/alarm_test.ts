/**
 * lib/alarm.ts: sub-millisecond wake-ups from a worker thread, shared by timer queues.
 *
 * These tests assert what holds however busy the machine is: no deadline
 * runs early, none is lost, and a deadline that ran on time was woken by the
 * alarm. How close to its deadline a wake-up lands is a benchmark figure
 * (`deno task bench`, bench/latency.ts), not a test.
 */
import assert from "node:assert/strict";
import { Alarm } from "../lib/alarm.ts";
import { DUE_WINDOW_MS, TimerQueue } from "../lib/timers.ts";
import { waitFor } from "./helpers.ts";

/**
 * With the alarm running, a queue runs what is due within 0.25 ms of a
 * wake-up (PRECISE_WINDOW_MS in lib/timers.ts): deadlines may run that much
 * early, never more.
 */
const EARLY_MS = 0.3;
/** lib/timers.ts: the fallback check that runs deadlines this overdue without the alarm. */
const WATCHDOG_MS = 50;
/** Every deadline runs within this, however loaded the machine (a lost one fails the test). */
const LATE_BOUND_MS = 5000;
/** Starting a worker thread can take a while on a busy machine. */
const START_MS = 20000;

/** Schedules `n` deadlines `gap` ms apart on `q`; resolves with each one's lateness (ms), in run order. */
function runDeadlines(q: TimerQueue, n: number, gap: number): Promise<number[]> {
  const t0 = performance.now() + 2;
  const late: number[] = [];
  const order: number[] = [];
  return new Promise((resolve, reject) => {
    const lost = setTimeout(() => {
      reject(
        new Error(`${n - late.length} of ${n} deadlines did not run within ${LATE_BOUND_MS} ms`),
      );
    }, LATE_BOUND_MS + n * gap);
    for (let i = 0; i < n; i++) {
      // Fractional offsets: whole-millisecond timers cannot hit these.
      const at = t0 + i * gap + 0.37;
      q.at(at, () => {
        late.push(performance.now() - at);
        order.push(i);
        if (late.length < n) return;
        clearTimeout(lost);
        try {
          assert.deepEqual(order, [...order].sort((a, b) => a - b), "deadlines ran out of order");
          resolve(late);
        } catch (e) {
          reject(e);
        }
      });
    }
  });
}

/**
 * None early (by more than `early`: the alarm's window by default, the
 * queue's due window on setTimeout); none lost (runDeadlines rejects then).
 */
function assertNeverEarly(late: number[], early = EARLY_MS): void {
  for (const l of late) assert.ok(l > -early, `ran ${(-l).toFixed(3)} ms early`);
}

/**
 * Runs single deadlines, one at a time, until `want` ran on time (at most
 * `tries`). With one deadline in the queue and the alarm running, only the
 * alarm or the watchdog can run it, and the watchdog only once it is
 * WATCHDOG_MS overdue: so each deadline that ran sooner must have come with
 * an alarm wake-up. That holds at any load; a slow machine only makes fewer
 * deadlines on time, and the loop then tries more of them.
 */
async function assertAlarmWakesEach(
  alarm: Alarm,
  q: TimerQueue,
  want: number,
  tries = 100,
): Promise<void> {
  let onTime = 0;
  for (let i = 0; i < tries && onTime < want; i++) {
    const before = alarm.wakeUps;
    const late = await runDeadlines(q, 1, 0);
    assertNeverEarly(late);
    if (late[0] >= WATCHDOG_MS) continue;
    onTime++;
    assert.ok(
      alarm.wakeUps > before,
      `a deadline ran ${late[0].toFixed(2)} ms late without an alarm wake-up`,
    );
  }
  assert.ok(onTime > 0, `in ${tries} tries, no deadline ran before the watchdog`);
}

Deno.test("the alarm wakes the queue for each deadline, none early", async () => {
  const alarm = new Alarm();
  const q = new TimerQueue({ alarm });
  try {
    // The worker starts with the first deadline; until it runs, setTimeout does.
    await runDeadlines(q, 1, 0);
    await waitFor(() => alarm.ready, START_MS, "the alarm's worker to start");
    // A run of deadlines 3 ms apart: all run, in order, none early.
    assertNeverEarly(await runDeadlines(q, 20, 3));
    // Each deadline on its own needs (and gets) a wake-up of its own.
    await assertAlarmWakesEach(alarm, q, 10);
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
    await waitFor(() => alarm.ready, START_MS, "the alarm's worker to start");
    const [la, lb] = await Promise.all([runDeadlines(a, 10, 1.5), runDeadlines(b, 10, 1.1)]);
    assertNeverEarly([...la, ...lb]);
    a.clear();
    assert.equal(alarm.running, true, "b still uses it");
    assertNeverEarly(await runDeadlines(b, 5, 1));
    b.clear();
    assert.equal(alarm.running, false);
    // Used again: a new worker, and deadlines still run.
    await runDeadlines(a, 3, 1);
    await waitFor(() => alarm.ready, START_MS, "a new worker to start");
    await assertAlarmWakesEach(alarm, a, 3);
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
    assertNeverEarly(late, DUE_WINDOW_MS + 0.01);
    await waitFor(() => !alarm.running, START_MS, "the failed worker to be dropped");
    assert.equal(alarm.ready, false);
    // After the failure, deadlines still run (and the alarm is not retried).
    const after = await runDeadlines(q, 5, 2);
    assert.equal(after.length, 5);
    assertNeverEarly(after, DUE_WINDOW_MS + 0.01);
    assert.equal(alarm.running, false);
    assert.equal(alarm.wakeUps, 0);
  } finally {
    q.clear();
  }
});
