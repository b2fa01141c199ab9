/**
 * One timer for thousands of streams. Every paced token registers an absolute
 * deadline (performance.now() milliseconds) in a binary min-heap; a single
 * setTimeout is armed for the earliest one. This keeps timer churn O(1) per
 * wake-up instead of one runtime timer per token per stream.
 */

export interface TimerHandle {
  at: number;
  fn: () => void;
  /** Position in the heap, -1 once fired or cancelled. */
  pos: number;
}

/** Deadlines this close are run now rather than after another timer round. */
const EARLY_MS = 0.4;

export class TimerQueue {
  #heap: TimerHandle[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedAt = Infinity;

  get size(): number {
    return this.#heap.length;
  }

  /** Runs `fn` at absolute time `at` (performance.now() scale). */
  at(at: number, fn: () => void): TimerHandle {
    const h: TimerHandle = { at, fn, pos: this.#heap.length };
    this.#heap.push(h);
    this.#up(h.pos);
    if (this.#heap[0] === h) this.#arm();
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
    if (this.#heap.length === 0) this.#disarm();
  }

  /** Stops the runtime timer (pending callbacks are dropped). */
  clear(): void {
    for (const h of this.#heap) h.pos = -1;
    this.#heap = [];
    this.#disarm();
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = Infinity;
  }

  #arm(): void {
    const first = this.#heap[0];
    if (!first) return this.#disarm();
    if (this.#timer !== undefined && this.#armedAt <= first.at) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#armedAt = first.at;
    // setTimeout has whole-millisecond granularity and fires late, never
    // early: aim at the floor so lateness stays under a millisecond.
    const delay = Math.max(0, Math.floor(first.at - performance.now()));
    this.#timer = setTimeout(this.#fire, delay);
  }

  #fire = (): void => {
    this.#timer = undefined;
    this.#armedAt = Infinity;
    const heap = this.#heap;
    let now = performance.now();
    let ran = 0;
    while (heap.length > 0 && heap[0].at <= now + EARLY_MS) {
      const h = heap[0];
      this.cancel(h);
      try {
        h.fn();
      } catch (e) {
        console.error("timer callback failed", e);
      }
      // Callbacks take time; refresh the clock now and then, not every time.
      if ((++ran & 63) === 0) now = performance.now();
    }
    this.#arm();
  };

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
