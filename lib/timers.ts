/**
 * One timer for thousands of streams. Every paced token registers an absolute
 * deadline (performance.now() milliseconds) in a binary min-heap; a single
 * wake-up is armed for the earliest one: the precise alarm (lib/alarm.ts)
 * when the queue asks for it and it runs, else a setTimeout. This keeps
 * timer churn O(1) per wake-up instead of one runtime timer per token per
 * stream.
 */

import { clearImmediate, setImmediate } from "node:timers";
import type { Alarm, AlarmClient } from "./alarm.ts";

export interface TimerHandle {
  at: number;
  fn: () => void;
  /** Position in the heap, -1 once fired or cancelled. */
  pos: number;
}

/**
 * How Deno 2.9's setTimeout behaves (measured on Linux): the delay is cut to
 * whole milliseconds and never comes sooner than about 2 ms after arming.
 * How late the callback runs after the whole-millisecond delay depends on
 * where the timer was armed: about 0.1 ms when armed from a timer callback
 * (as the queue re-arms itself), about 1.2 ms (0.3–2.2) when armed from
 * anywhere else, such as a request handler setting a first token's deadline
 * or a setImmediate callback.
 */
const TIMER_SLACK_MS = 0.1;
const OUTSIDE_SLACK_MS = 1.2;
const TIMER_FLOOR_MS = 2 + TIMER_SLACK_MS;

/**
 * Deadlines within this window are due now. The next wake-up cannot come
 * sooner than TIMER_FLOOR_MS, so a deadline closer than half of that is met
 * more closely by running it a little early than by sleeping past it.
 * Callers that would otherwise arm a timer for such a deadline should run it
 * inline instead (see `isDue`).
 */
export const DUE_WINDOW_MS = TIMER_FLOOR_MS / 2;

/**
 * The longest run of callbacks between two turns of the event loop. Bytes
 * that callbacks hand to the runtime reach their sockets, and new requests
 * are read, only between turns; so a wake-up with many due deadlines (a
 * thousand streams put ~100 tokens in each) runs in slices and yields
 * (setImmediate) in between, instead of holding every frame and every
 * arriving request until the whole burst is done.
 */
const SLICE_MS = 0.1;

/**
 * With the alarm: it wakes the main thread ~0.1 ms after the time it is set
 * for, so it is set that much before the deadline. A wake-up runs what is
 * due within PRECISE_WINDOW_MS (at least ALARM_LEAD_MS, so the deadline it
 * was set for is among them): with a thousand streams deadlines are ~20 µs
 * apart, and gathering a quarter of a millisecond of them per wake-up keeps
 * wake-ups (each costs both threads some µs) to a few thousand a second.
 */
const ALARM_LEAD_MS = 0.1;
const PRECISE_WINDOW_MS = 0.25;

/**
 * While the alarm is in use, a coarse check every WATCHDOG_MS runs deadlines
 * it has left more than WATCHDOG_MS overdue, so that nothing the worker
 * thread might miss (it is starved, or dies) leaves a stream hanging.
 */
const WATCHDOG_MS = 50;

export interface TimerQueueOptions {
  /**
   * Wake up through this alarm (lib/alarm.ts) once its worker runs, instead
   * of setTimeout's whole milliseconds.
   */
  alarm?: Alarm | null;
}

export class TimerQueue {
  #heap: TimerHandle[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Set while a burst is paused between slices (see SLICE_MS). */
  #immediate: ReturnType<typeof setImmediate> | undefined;
  #armedAt = Infinity;
  /** Inside #fire: re-arm once at the end, not on every insertion. */
  #firing = false;
  readonly #alarm: Alarm | null;
  /** Our seat at the alarm; `at` is Infinity while we do not use it. */
  readonly #client: AlarmClient = { at: Infinity, wake: () => this.#alarmed() };
  /** Deadlines within this are due now: DUE_WINDOW_MS, or less with the alarm. */
  #window = DUE_WINDOW_MS;
  #watchdog: ReturnType<typeof setInterval> | undefined;

  constructor(opts: TimerQueueOptions = {}) {
    this.#alarm = opts.alarm ?? null;
  }

  get size(): number {
    return this.#heap.length;
  }

  /**
   * Runs `fn` at absolute time `at` (performance.now() scale). A caller that
   * schedules over and over (a stream, token after token) passes back its
   * fired handle to be reused instead of allocating one per call.
   */
  at(at: number, fn: () => void, reuse?: TimerHandle | null): TimerHandle {
    let h: TimerHandle;
    if (reuse && reuse.pos < 0) {
      h = reuse;
      h.at = at;
      h.fn = fn;
      h.pos = this.#heap.length;
    } else {
      h = { at, fn, pos: this.#heap.length };
    }
    this.#heap.push(h);
    this.#up(h.pos);
    if (this.#heap[0] === h && !this.#firing) this.#arm(OUTSIDE_SLACK_MS);
    return h;
  }

  cancel(h: TimerHandle): void {
    const i = h.pos;
    if (i < 0) return;
    h.pos = -1;
    const last = this.#heap.pop()!;
    if (i < this.#heap.length) {
      this.#heap[i] = last;
      last.pos = i;
      this.#down(i);
      this.#up(last.pos);
    }
    if (this.#heap.length === 0 && !this.#firing) this.#disarm();
  }

  /** True when a deadline is close enough to run now rather than sleep for. */
  isDue(at: number, now: number = performance.now()): boolean {
    return at <= now + this.#window;
  }

  /**
   * Stops the runtime timer (pending callbacks are dropped) and lets go of
   * the alarm; the queue can be used again afterwards.
   */
  clear(): void {
    for (const h of this.#heap) h.pos = -1;
    this.#heap = [];
    this.#disarm();
    this.#alarm?.leave(this.#client);
    this.#window = DUE_WINDOW_MS;
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    if (this.#watchdog !== undefined) clearInterval(this.#watchdog);
    this.#timer = undefined;
    this.#immediate = undefined;
    this.#watchdog = undefined;
    this.#armedAt = Infinity;
    if (this.#client.at !== Infinity) {
      this.#client.at = Infinity;
      this.#alarm?.update();
    }
  }

  /** Arms the alarm if it runs; false when setTimeout has to do. */
  #armAlarm(at: number): boolean {
    const alarm = this.#alarm;
    if (alarm === null) return false;
    alarm.join(this.#client);
    if (!alarm.ready) {
      // Not started yet, or failed for good (a watchdog left over is harmless).
      this.#window = DUE_WINDOW_MS;
      return false;
    }
    this.#window = PRECISE_WINDOW_MS;
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#armedAt = Infinity;
    }
    this.#watchdog ??= setInterval(this.#watch, WATCHDOG_MS);
    const wakeAt = at - ALARM_LEAD_MS;
    if (this.#client.at !== wakeAt) {
      this.#client.at = wakeAt;
      alarm.update();
    }
    return true;
  }

  #alarmed(): void {
    this.#client.at = Infinity;
    // A burst paused between slices goes on from its setImmediate.
    if (this.#immediate !== undefined || this.#firing) return;
    if (this.#heap.length === 0) return this.#disarm();
    this.#run(TIMER_SLACK_MS);
  }

  #watch = (): void => {
    const first = this.#heap[0];
    if (!first) return this.#disarm();
    if (this.#immediate !== undefined || this.#timer !== undefined) return;
    if (first.at < performance.now() - WATCHDOG_MS) this.#run(OUTSIDE_SLACK_MS);
  };

  /** `slack`: how late a callback armed from here runs (see TIMER_SLACK_MS). */
  #arm(slack: number): void {
    const first = this.#heap[0];
    if (!first) return this.#disarm();
    // A paused burst resumes at once and looks at the heap afresh.
    if (this.#immediate !== undefined) return;
    if (this.#armAlarm(first.at)) return;
    if (this.#timer !== undefined && this.#armedAt <= first.at) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#armedAt = first.at;
    // Whole-millisecond delays that land `slack` late: round so the wake-up
    // falls within half a millisecond of the deadline, on either side (more
    // spread when armed from outside a timer); #fire runs whatever is due
    // within DUE_WINDOW_MS.
    const delay = Math.max(0, Math.round(first.at - performance.now() - slack));
    this.#timer = setTimeout(this.#fire, delay);
  }

  #fire = (): void => this.#run(TIMER_SLACK_MS);
  #resume = (): void => {
    this.#immediate = undefined;
    this.#run(OUTSIDE_SLACK_MS);
  };

  /** Runs due callbacks for up to SLICE_MS; `slack`: see #arm. */
  #run(slack: number): void {
    this.#timer = undefined;
    this.#armedAt = Infinity;
    const heap = this.#heap;
    this.#firing = true;
    let now = performance.now();
    try {
      const stop = now + SLICE_MS;
      let ran = 0;
      while (heap.length > 0 && heap[0].at <= now + this.#window) {
        const h = heap[0];
        this.cancel(h);
        try {
          h.fn();
        } catch (e) {
          console.error("timer callback failed", e);
        }
        // Callbacks take time; read the clock now and then, not every time.
        if ((++ran & 7) === 0 && (now = performance.now()) >= stop) break;
      }
    } finally {
      this.#firing = false;
    }
    if (heap.length > 0 && heap[0].at <= now + this.#window) {
      this.#immediate = setImmediate(this.#resume);
    } else {
      this.#arm(slack);
    }
  }

  #up(i: number): void {
    const heap = this.#heap;
    const h = heap[i];
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p];
      if (parent.at <= h.at) break;
      heap[i] = parent;
      parent.pos = i;
      i = p;
    }
    heap[i] = h;
    h.pos = i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const h = heap[i];
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && heap[r].at < heap[l].at ? r : l;
      if (heap[c].at >= h.at) break;
      heap[i] = heap[c];
      heap[i].pos = i;
      i = c;
    }
    heap[i] = h;
    h.pos = i;
  }
}
