/**
 * One timer for thousands of streams. Every paced token registers an absolute
 * deadline (performance.now() milliseconds) in a binary min-heap; a single
 * setTimeout is armed for the earliest one. This keeps timer churn O(1) per
 * wake-up instead of one runtime timer per token per stream.
 */

import { clearImmediate, setImmediate } from "node:timers";

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

export class TimerQueue {
  #heap: TimerHandle[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Set while a burst is paused between slices (see SLICE_MS). */
  #immediate: ReturnType<typeof setImmediate> | undefined;
  #armedAt = Infinity;
  /** Inside #fire: re-arm once at the end, not on every insertion. */
  #firing = false;

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
    return at <= now + DUE_WINDOW_MS;
  }

  /** Stops the runtime timer (pending callbacks are dropped). */
  clear(): void {
    for (const h of this.#heap) h.pos = -1;
    this.#heap = [];
    this.#disarm();
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
    this.#armedAt = Infinity;
  }

  /** `slack`: how late a callback armed from here runs (see TIMER_SLACK_MS). */
  #arm(slack: number): void {
    const first = this.#heap[0];
    if (!first) return this.#disarm();
    // A paused burst resumes at once and looks at the heap afresh.
    if (this.#immediate !== undefined) return;
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
      while (heap.length > 0 && heap[0].at <= now + DUE_WINDOW_MS) {
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
    if (heap.length > 0 && heap[0].at <= now + DUE_WINDOW_MS) {
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
