/**
 * Runs generation plans through the engine and turns their steps into
 * output: a byte stream of the family's events (one token event per token
 * per choice, written by its OutputEncoder) or, for non-streaming answers, a
 * promise that settles when the last token would have been sent. A reader
 * that goes away cancels every job at once.
 */
import type { Engine, Job, JobSink } from "../engine.ts";
import { ApiError } from "../errors.ts";
import type { OutputEncoder } from "./output.ts";
import type { GenerationPlan } from "./plan.ts";
import { AnswerRenderer } from "./render.ts";

/** Submits every plan; if one is refused (429), the others are withdrawn. */
function submitAll(
  engine: Engine,
  plans: readonly GenerationPlan[],
  sinks: JobSink[],
  arrival: number | undefined,
): Job[] {
  const jobs: Job[] = [];
  try {
    for (let i = 0; i < plans.length; i++) {
      jobs.push(engine.submit(plans[i].spec, sinks[i], arrival));
    }
  } catch (e) {
    for (const j of jobs) engine.cancel(j);
    throw e;
  }
  return jobs;
}

const encoder = new TextEncoder();

/**
 * SSE chunks are encoded into views of a shared slab rather than each into
 * its own new ArrayBuffer: `encode` costs ~1 µs per frame (mostly allocating
 * the buffer), `encodeInto` a slab ~0.15 µs. Each chunk gets its own region,
 * never reused: a new slab starts when one is full, and a slab is freed once
 * no chunk in it is still referenced. Small slabs bound what a slow reader can
 * pin.
 */
const SLAB_BYTES = 16 * 1024;
let slab = new Uint8Array(SLAB_BYTES);
let slabUsed = 0;

/** `s` as UTF-8, in a fresh region of the current slab. */
export function encodeChunk(s: string): Uint8Array {
  // UTF-8 needs at most 3 bytes per UTF-16 unit.
  const worst = s.length * 3;
  if (worst > SLAB_BYTES / 2) return encoder.encode(s);
  if (SLAB_BYTES - slabUsed < worst) {
    slab = new Uint8Array(SLAB_BYTES);
    slabUsed = 0;
  }
  const start = slabUsed;
  const { written } = encoder.encodeInto(s, start === 0 ? slab : slab.subarray(start));
  slabUsed += written;
  return slab.subarray(start, slabUsed);
}

/**
 * The client's abort signal, asked for only when an answer is not complete
 * at once: with zero latency the whole answer is produced synchronously, and
 * creating a Request's signal costs a runtime op and a listener.
 */
export type SignalSource = () => AbortSignal | undefined;

export interface StreamOptions {
  /** Usage on every token event (stream_options.continuous_usage_stats). */
  continuousUsage: boolean;
  /** Aborts when the client goes away. */
  signal?: SignalSource;
  /** When the request reached the server (performance.now()); default: now. */
  arrival?: number;
  /**
   * A reader that takes nothing for this long while its buffer is full is
   * dropped and its jobs cancelled (ms). Default: never.
   */
  stallTimeoutMs?: number;
  /** Told once when a stalled reader is dropped. */
  onStall?: () => void;
  /**
   * Called once if the answer outlives its submission (it waits, is paced or
   * is held up by its reader); the function it returns is called when the
   * stream ends. A zero-latency answer never calls it.
   */
  onLong?: (abort: () => void) => () => void;
}

/**
 * Chunks a stream may have queued and unread before it stops rendering
 * frames. The engine goes on (a slow reader does not slow the model), the
 * stream only counts the steps it owes and renders them when the reader
 * takes more: a stuck client pins at most this many chunks of at most
 * RENDER_BURST characters, not its whole answer. Counted in chunks against
 * the default high-water mark of one, so a healthy stream never makes the
 * runtime ask for more (a byte-sized mark costs a pull call and a promise
 * per chunk: +0.2 ms token-error p50 at 1 000 streams).
 */
const QUEUED_CHUNKS = 8;
/** Characters rendered in one go before they are handed on (and the queue checked). */
const RENDER_BURST = 32 * 1024;

/** An SSE body for the plans; throws (e.g. 429) before any byte is produced. */
export function streamPlans(
  engine: Engine,
  plans: readonly GenerationPlan[],
  fmt: OutputEncoder,
  opts: StreamOptions,
): ReadableStream<Uint8Array> {
  const s = new SseStream(engine, plans, fmt, opts);
  const body = new ReadableStream<Uint8Array>(s);
  s.submit();
  return body;
}

/** One plan's engine events, handed to its stream (an object, not closures). */
class PlanSink implements JobSink {
  constructor(private readonly s: SseStream, private readonly p: number) {}
  onStep(_job: Job, k: number): void {
    this.s.step(this.p, k);
  }
  onPause(): void {
    this.s.flush();
  }
  onDone(): void {
    this.s.planDone(this.p);
  }
  onAbort(): void {
    this.s.fail(new DOMException("the server is shutting down", "AbortError"));
  }
}

/**
 * The state of one streamed answer and the underlying source of its body.
 * A class so that a stream allocates its state once, with no closures: this
 * is on every streamed request's path.
 */
class SseStream implements UnderlyingDefaultSource<Uint8Array> {
  #ctrl!: ReadableStreamDefaultController<Uint8Array>;
  #open = true;
  #jobs: Job[] = [];
  #stallTimer: ReturnType<typeof setTimeout> | undefined;
  #release: (() => void) | undefined;
  /** The output events of the answer's steps, as the family writes them. */
  readonly #events: AnswerRenderer;
  /** Per plan: steps the engine emitted, steps rendered, job done, end rendered. */
  readonly #emittedSteps: number[];
  readonly #renderedSteps: number[];
  readonly #done: boolean[];
  readonly #endRendered: boolean[];
  // The frames of one burst of steps (a whole zero-latency answer, or tokens
  // caught up after a late timer) leave as one chunk: one encode and one
  // enqueue per burst instead of one per token. The engine says when a burst
  // ends (onPause, onDone). The runtime writes to the socket only after the
  // current task anyway, so no frame leaves later.
  #buffered = "";
  /** The queue is full: frames wait (as step counts) until the reader pulls. */
  #blocked = false;

  constructor(
    private readonly engine: Engine,
    private readonly plans: readonly GenerationPlan[],
    fmt: OutputEncoder,
    private readonly opts: StreamOptions,
  ) {
    const count = plans.length;
    this.#events = new AnswerRenderer(plans, fmt, opts.continuousUsage);
    this.#emittedSteps = new Array<number>(count).fill(0);
    this.#renderedSteps = new Array<number>(count).fill(0);
    this.#done = new Array<boolean>(count).fill(false);
    this.#endRendered = new Array<boolean>(count).fill(false);
  }

  start(c: ReadableStreamDefaultController<Uint8Array>): void {
    this.#ctrl = c;
  }

  /** Called when the reader waits on an empty queue. */
  pull(): void {
    if (!this.#blocked || !this.#open) return;
    this.#blocked = false;
    clearTimeout(this.#stallTimer);
    for (let p = 0; p < this.plans.length; p++) if (!this.#render(p)) return;
    this.#finishIfDone();
  }

  cancel(): void {
    this.#cancelAll();
  }

  /** Submits the jobs (after the body exists: a zero-latency answer is written at once). */
  submit(): void {
    const sinks = this.plans.map((_, p) => new PlanSink(this, p));
    this.#jobs = submitAll(this.engine, this.plans, sinks, this.opts.arrival);
    if (!this.#open) return;
    this.#release = this.opts.onLong?.(() =>
      this.fail(new DOMException("aborted by the Abort RPC", "AbortError"))
    );
    const signal = this.opts.signal?.();
    // A client that left before we got here never fires "abort".
    if (signal?.aborted) this.#cancelAll();
    else signal?.addEventListener("abort", () => this.#cancelAll(), { once: true });
  }

  step(p: number, k: number): void {
    this.#emittedSteps[p] = k + 1;
    if (this.#blocked || !this.#open) return;
    const rendered = this.#renderedSteps;
    // The usual case: just this step is owed.
    if (rendered[p] === k && this.#buffered.length < RENDER_BURST) {
      rendered[p] = k + 1;
      this.#buffered += this.#events.step(p, k);
    } else this.#render(p);
  }

  planDone(p: number): void {
    this.#done[p] = true;
    if (!this.#blocked && this.#open && this.#render(p)) this.#finishIfDone();
  }

  fail(reason: DOMException): void {
    if (!this.#open) return;
    this.#cancelAll();
    this.#ctrl.error(reason);
  }

  flush(): void {
    if (!this.#open || this.#buffered === "") return;
    const s = this.#buffered;
    this.#buffered = "";
    try {
      this.#ctrl.enqueue(encodeChunk(s));
    } catch {
      return this.#cancelAll();
    }
    // desiredSize = 1 − chunks queued.
    const queue = this.#ctrl.desiredSize ?? 1;
    if (queue <= 1 - QUEUED_CHUNKS && !this.#blocked) {
      this.#blocked = true;
      this.#watchStall(queue);
    }
  }

  #ended(): void {
    const r = this.#release;
    this.#release = undefined;
    r?.();
  }

  #cancelAll(): void {
    this.#open = false;
    clearTimeout(this.#stallTimer);
    for (const j of this.#jobs) this.engine.cancel(j);
    this.#ended();
  }

  /**
   * Drops the reader if it takes nothing for the stall timeout. A reader
   * that takes some chunks but not all of them is slow, not stuck: the
   * watch starts again from the queue it left.
   */
  #watchStall(queue: number): void {
    const ms = this.opts.stallTimeoutMs;
    if (ms === undefined) return;
    this.#stallTimer = setTimeout(() => {
      if (!this.#blocked || !this.#open) return;
      const now = this.#ctrl.desiredSize ?? 1;
      if (now > queue) return this.#watchStall(now);
      this.opts.onStall?.();
      this.fail(new DOMException("the client stopped reading", "AbortError"));
    }, ms);
  }

  /**
   * Renders what plan p owes, a burst at a time; stops early (false) when
   * the queue fills up.
   */
  #render(p: number): boolean {
    const rendered = this.#renderedSteps;
    while (rendered[p] < this.#emittedSteps[p]) {
      this.#buffered += this.#events.step(p, rendered[p]++);
      if (this.#buffered.length >= RENDER_BURST) {
        this.flush();
        if (this.#blocked || !this.#open) return false;
      }
    }
    if (this.#done[p] && !this.#endRendered[p]) {
      this.#endRendered[p] = true;
      this.#buffered += this.#events.end(p);
    }
    return true;
  }

  #finishIfDone(): void {
    this.flush();
    if (this.#open && this.#events.finished) {
      this.#open = false;
      clearTimeout(this.#stallTimer);
      this.#ctrl.close();
      this.#ended();
    }
  }
}

/** Where a long answer registers how to end it (the gRPC Abort RPC); returns the unregister. */
export interface AbortRegistry {
  abortable(abort: () => void): () => void;
}

/**
 * Runs the plans to the end for a non-streaming answer. Returns null when
 * they finished while being submitted (zero latency: no promise, nothing to
 * wait for), else a promise that resolves when the last token would have
 * been sent and rejects if the client goes away first.
 */
export function collectPlans(
  engine: Engine,
  plans: readonly GenerationPlan[],
  signal?: SignalSource,
  arrival?: number,
  abortable?: AbortRegistry,
): Promise<void> | null {
  let pending = plans.length;
  let resolve: (() => void) | undefined;
  let release: (() => void) | undefined;
  let abort: ((reason: Error) => void) | undefined;
  const sink: JobSink = {
    onDone() {
      if (--pending === 0) {
        release?.();
        resolve?.();
      }
    },
    onAbort: () => abort?.(new ApiError(503, "The server is shutting down.")),
  };
  const sinks = new Array<JobSink>(plans.length).fill(sink);
  const jobs = submitAll(engine, plans, sinks, arrival);
  if (pending === 0) return null;
  return new Promise((res, reject) => {
    resolve = res;
    const s = signal?.();
    abort = (reason) => {
      release?.();
      for (const j of jobs) engine.cancel(j);
      reject(reason);
    };
    release = abortable?.abortable(() =>
      abort?.(new DOMException("aborted by the Abort RPC", "AbortError"))
    );
    const gone = () => abort?.(new DOMException("client disconnected", "AbortError"));
    // A client that left before we got here never fires "abort".
    if (s?.aborted) gone();
    else s?.addEventListener("abort", gone, { once: true });
  });
}
