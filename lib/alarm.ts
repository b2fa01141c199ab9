/**
 * A sub-millisecond wake-up for the main thread. Deno's setTimeout wakes in
 * whole-millisecond steps and 0.1–2 ms late, so tokens paced on it leave up
 * to a millisecond off schedule. Here a worker thread sleeps in
 * `Atomics.wait` (a futex with a fine timeout) until the deadline, then
 * bumps a shared counter the main thread awaits with `Atomics.waitAsync`:
 * the main thread wakes ~0.1 ms after the deadline and burns no CPU waiting.
 *
 * One worker serves every TimerQueue of the process (data-parallel ranks run
 * in one process): it sleeps until the earliest deadline of all of them. It
 * starts when the first queue asks for it and stops when the last lets go,
 * so a process without paced tokens never starts it. Until it is running,
 * or if it fails, `ready` is false and queues use setTimeout.
 */

/** Int32 slots of the shared buffer. */
const WAKES = 0; // worker → main: bumped once per wake-up
const SEQ = 1; // main → worker: bumped whenever the deadline changes
const STOP = 2; // main → worker: 1 = exit
const UP = 3; // worker → main: 1 once the worker loop runs
/** Float64 slots (after the Int32 ones). */
const AT = 0; // the deadline, main thread's performance.now() ms; 0 = none
const WRITTEN = 1; // main thread's clock when AT was written
const SLEEP = 2; // the deadline the worker is sleeping until (Infinity: none)

/**
 * The worker. The two threads' performance.now() clocks differ by a constant
 * (their isolates' start); the worker learns it from the main thread's
 * WRITTEN stamps: a stamp read after it was written is never ahead of the
 * worker's clock, so the largest stamp − clock difference seen is the offset
 * (short by the smallest write-to-read delay, some µs). So the worker never
 * wakes the main thread early, whatever the wall clock does.
 */
const WORKER_SOURCE = `
self.onmessage = (e) => {
  const i32 = new Int32Array(e.data, 0, 4);
  const f64 = new Float64Array(e.data, 16, 3);
  let offset = -Infinity;
  let fired = 0;
  Atomics.store(i32, ${UP}, 1);
  while (Atomics.load(i32, ${STOP}) === 0) {
    const seq = Atomics.load(i32, ${SEQ});
    const at = f64[${AT}];
    const stamp = f64[${WRITTEN}];
    const mine = performance.now();
    if (stamp - mine > offset) offset = stamp - mine;
    const now = mine + offset;
    if (at > 0 && at !== fired && now >= at) {
      fired = at;
      Atomics.add(i32, ${WAKES}, 1);
      Atomics.notify(i32, ${WAKES});
      continue;
    }
    const until = at > 0 && at !== fired ? at : Infinity;
    f64[${SLEEP}] = until;
    Atomics.wait(i32, ${SEQ}, seq, until === Infinity ? 60000 : until - now);
  }
  self.close();
};
`;

/** A TimerQueue's seat at the alarm. */
export interface AlarmClient {
  /** When it wants to be woken (performance.now() ms), Infinity for never. */
  at: number;
  /** Called (from a microtask) once the alarm has fired at or after `at`. */
  wake(): void;
}

export class Alarm {
  readonly #source: string;
  #i32 = new Int32Array(new SharedArrayBuffer(16));
  #f64 = new Float64Array(new SharedArrayBuffer(24));
  #worker: Worker | null = null;
  #clients = new Set<AlarmClient>();
  #failed = false;
  /** WAKES value last handled. */
  #seen = 0;
  #waiting = false;
  /** Bumped per worker stopped, so a wait on an old worker's buffer is ignored. */
  #generation = 0;
  #wakeUps = 0;

  /** `source`: the worker's code (tests pass a broken one). */
  constructor(source: string = WORKER_SOURCE) {
    this.#source = source;
  }

  /** True once the worker runs; false before, and after a failure. */
  get ready(): boolean {
    return this.#worker !== null && Atomics.load(this.#i32, UP) === 1;
  }

  /** Whether a worker thread exists (started, not yet stopped). */
  get running(): boolean {
    return this.#worker !== null;
  }

  /** How many times the alarm has woken the main thread. */
  get wakeUps(): number {
    return this.#wakeUps;
  }

  /** Starts the worker if this is the first client. */
  join(client: AlarmClient): void {
    if (this.#failed || this.#clients.has(client)) return;
    this.#clients.add(client);
    if (this.#worker === null) this.#start();
  }

  /** Stops the worker if this was the last client. */
  leave(client: AlarmClient): void {
    if (!this.#clients.delete(client)) return;
    if (this.#clients.size === 0) this.#stop();
    else this.update();
  }

  /** Aims the worker at the earliest client deadline (call after one moved). */
  update(): void {
    if (!this.ready) return;
    let at = Infinity;
    for (const c of this.#clients) if (c.at < at) at = c.at;
    const f64 = this.#f64;
    if (at === Infinity) {
      f64[AT] = 0;
      return; // the worker finds nothing to do when it next wakes
    }
    if (at === f64[AT]) return;
    f64[AT] = at;
    f64[WRITTEN] = performance.now();
    Atomics.add(this.#i32, SEQ, 1);
    // A worker sleeping until a later time has to look again; one sleeping
    // until an earlier one wakes by itself and finds the new deadline.
    if (at < f64[SLEEP]) Atomics.notify(this.#i32, SEQ);
    this.#await();
  }

  #await(): void {
    if (this.#waiting) return;
    const r = Atomics.waitAsync(this.#i32, WAKES, this.#seen);
    if (r.async) {
      this.#waiting = true;
      const generation = this.#generation;
      r.value.then(() => {
        if (generation !== this.#generation) return;
        this.#waiting = false;
        this.#handle();
      });
    } else {
      // The worker fired since the last wake-up was handled. (Only a settled
      // wait clears #waiting: two pending waits would double every wake-up.)
      queueMicrotask(this.#handle);
    }
  }

  #handle = (): void => {
    if (this.#worker === null) return;
    this.#seen = Atomics.load(this.#i32, WAKES);
    this.#wakeUps++;
    const now = performance.now();
    for (const c of this.#clients) if (c.at <= now) c.wake();
    // Clients that re-armed called update(); make sure a wait is pending.
    if (this.#f64[AT] > 0) this.#await();
  };

  #start(): void {
    // A fresh buffer per worker: one being terminated may still run a moment.
    const sab = new SharedArrayBuffer(4 * 4 + 3 * 8);
    this.#i32 = new Int32Array(sab, 0, 4);
    this.#f64 = new Float64Array(sab, 16, 3);
    this.#f64[SLEEP] = Infinity;
    this.#seen = 0;
    try {
      // A data: URL, not a blob: one: compiled binaries (deno compile) could
      // not load workers from blob: URLs until recently (denoland/deno#29962).
      const url = `data:text/javascript,${encodeURIComponent(this.#source)}`;
      this.#worker = new Worker(url, { type: "module" });
      this.#worker.onerror = (e) => {
        e.preventDefault();
        this.#fail();
      };
      this.#worker.postMessage(sab);
    } catch {
      this.#fail();
    }
  }

  #stop(): void {
    const worker = this.#worker;
    if (worker === null) return;
    this.#worker = null;
    // A wait still pending on this worker's buffer never counts again.
    this.#generation++;
    this.#waiting = false;
    // terminate() does not interrupt Atomics.wait: ask the loop to end too.
    Atomics.store(this.#i32, STOP, 1);
    Atomics.add(this.#i32, SEQ, 1);
    Atomics.notify(this.#i32, SEQ);
    worker.terminate();
  }

  /** Without the worker, every client falls back to setTimeout for good. */
  #fail(): void {
    this.#failed = true;
    this.#stop();
    const clients = [...this.#clients];
    this.#clients.clear();
    for (const c of clients) queueMicrotask(() => c.wake());
  }
}

/** The process-wide alarm: one worker for every engine of the process. */
export const processAlarm: Alarm = new Alarm();
