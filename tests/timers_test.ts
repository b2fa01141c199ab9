/** lib/timers.ts: one runtime timer for many deadlines, run in order and in slices. */
import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { DUE_WINDOW_MS, TimerQueue } from "../lib/timers.ts";
import { waitFor } from "./helpers.ts";

/**
 * Resolves once a deadline set on `q` after everything already queued has
 * run: the heap runs in deadline order, so anything still pending from
 * before would have run first. Waits for a condition instead of sleeping.
 */
async function drained(q: TimerQueue): Promise<void> {
  let done = false;
  q.at(performance.now() + 5, () => done = true);
  await waitFor(() => done, 10000, "a later deadline to run");
}

/** Keeps the thread busy for `ms` (a callback doing real work). */
function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* busy */ }
}

Deno.test("deadlines run in order, none early by more than the due window", async () => {
  const q = new TimerQueue();
  const t0 = performance.now();
  const ran: { i: number; late: number }[] = [];
  const delays = [12, 3, 7, 3.5, 20, 0];
  delays.forEach((d, i) => q.at(t0 + d, () => ran.push({ i, late: performance.now() - t0 - d })));
  await waitFor(() => ran.length === delays.length, 10000, "every deadline to run");
  assert.deepEqual(ran.map((r) => r.i), [5, 1, 3, 2, 0, 4]);
  // A deadline within the due window runs at once rather than sleep past it:
  // that much early, never more (lateness is the benchmark's business).
  for (const r of ran) assert.ok(r.late > -DUE_WINDOW_MS - 0.01, `ran ${-r.late} ms early`);
  assert.equal(q.size, 0);
});

Deno.test("a long burst of due callbacks yields to the event loop between slices", async () => {
  const q = new TimerQueue();
  const order: number[] = [];
  let turnAt = -1;
  const t0 = performance.now();
  // 100 callbacks, all due at once, 4 ms of work together.
  for (let i = 0; i < 100; i++) {
    q.at(t0 + i * 0.001, () => {
      if (i === 0) setImmediate(() => turnAt = order.length);
      spin(0.04);
      order.push(i);
    });
  }
  await waitFor(() => order.length === 100, 10000, "every callback to run");
  assert.deepEqual(order, [...Array(100).keys()]);
  // The event loop had a turn after the first slice, long before the end.
  assert.ok(turnAt > 0 && turnAt < 50, `event loop turn after ${turnAt} callbacks`);
});

Deno.test("cancel and clear work while a burst is paused between slices", async () => {
  const q = new TimerQueue();
  const ran: number[] = [];
  const t0 = performance.now();
  const handles = Array.from({ length: 60 }, (_, i) =>
    q.at(t0 + i * 0.001, () => {
      spin(0.04);
      ran.push(i);
      if (i === 0) setImmediate(() => q.cancel(handles[59]));
    }));
  await waitFor(() => ran.length === 59, 10000, "the other 59 callbacks to run");
  await drained(q);
  assert.ok(!ran.includes(59), "a cancelled callback ran");
  assert.equal(ran.length, 59);
  assert.equal(q.size, 0);

  // clear() during a pause drops the rest; nothing runs afterwards.
  const late: number[] = [];
  let ranBeforeClear = -1;
  const t1 = performance.now();
  for (let i = 0; i < 60; i++) {
    q.at(t1 + i * 0.001, () => {
      spin(0.04);
      late.push(i);
      if (i === 0) {
        setImmediate(() => {
          ranBeforeClear = late.length;
          q.clear();
        });
      }
    });
  }
  await waitFor(() => ranBeforeClear >= 0, 10000, "clear()");
  assert.equal(q.size, 0);
  assert.ok(ranBeforeClear < 60, "the burst was paused before clear()");
  // The queue still works after clear(), and nothing cleared runs any more.
  await drained(q);
  assert.equal(late.length, ranBeforeClear, `${late.length - ranBeforeClear} ran after clear()`);
});
