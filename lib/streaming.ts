/**
 * Runs generation plans through the engine and turns their steps into
 * output: a server-sent-events byte stream (one frame per token per choice,
 * formatted by the endpoint's ChunkFormat) or, for non-streaming answers, a
 * promise that settles when the last token would have been sent. A reader
 * that goes away cancels every job at once.
 */
import type { Engine, FinishReason, Job, JobSink } from "./engine.ts";
import type { TextStream } from "./content.ts";
import { ApiError } from "./errors.ts";
import type { GenerationPlan } from "./generation.ts";

export interface UsageCounts {
  prompt: number;
  completion: number;
  cached: number;
}

/** How one endpoint family writes its SSE frames (each ends with "\n\n"). */
export interface ChunkFormat {
  /** Token k of choice `index`; `finish` is set on the choice's last token. */
  token(
    index: number,
    text: string,
    k: number,
    finish: FinishReason | null,
    usage: UsageCounts | null,
  ): string;
  /** A choice that ends without any token. */
  empty(index: number, finish: FinishReason): string;
  /** The final usage frame (include_usage). */
  usage(u: UsageCounts): string;
  /** The closing frame(s). */
  end(): string;
}

export const SSE_DONE = "data: [DONE]\n\n";

export function usageOf(plans: readonly GenerationPlan[]): UsageCounts {
  let prompt = 0, completion = 0, cached = 0;
  for (const p of plans) {
    prompt += p.promptTokens;
    cached += p.cachedTokens;
    for (const len of p.spec.lengths) completion += len;
  }
  return { prompt, completion, cached };
}

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
  includeUsage: boolean;
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
  onLong?: () => () => void;
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
  fmt: ChunkFormat,
  opts: StreamOptions,
): ReadableStream<Uint8Array> {
  let ctrl!: ReadableStreamDefaultController<Uint8Array>;
  let open = true;
  let jobs: Job[] = [];
  let stallTimer: ReturnType<typeof setTimeout> | undefined;
  let release: (() => void) | undefined;
  const ended = () => {
    const r = release;
    release = undefined;
    r?.();
  };
  const cancelAll = () => {
    open = false;
    clearTimeout(stallTimer);
    for (const j of jobs) engine.cancel(j);
    ended();
  };
  const fail = (reason: DOMException) => {
    if (!open) return;
    cancelAll();
    ctrl.error(reason);
  };
  const n = plans.length > 0 ? plans[0].choices : 0;
  const total = usageOf(plans);
  /** Per plan: steps the engine emitted, steps rendered, job done, end rendered. */
  const emittedSteps = new Array<number>(plans.length).fill(0);
  const renderedSteps = new Array<number>(plans.length).fill(0);
  const done = new Array<boolean>(plans.length).fill(false);
  const endRendered = new Array<boolean>(plans.length).fill(false);
  // Each plan's text streams, made when its first token is rendered.
  const texts = new Array<(TextStream | undefined)[] | undefined>(plans.length);
  let endedCount = 0;
  let emitted = 0;
  // The frames of one burst of steps (a whole zero-latency answer, or tokens
  // caught up after a late timer) leave as one chunk: one encode and one
  // enqueue per burst instead of one per token. The engine says when a burst
  // ends (onPause, onDone). The runtime writes to the socket only after the
  // current task anyway, so no frame leaves later.
  let buffered = "";
  /** The queue is full: frames wait (as step counts) until the reader pulls. */
  let blocked = false;

  const flush = () => {
    if (!open || buffered === "") return;
    const s = buffered;
    buffered = "";
    try {
      ctrl.enqueue(encodeChunk(s));
    } catch {
      return cancelAll();
    }
    // desiredSize = 1 − chunks queued.
    if ((ctrl.desiredSize ?? 1) <= 1 - QUEUED_CHUNKS && !blocked) {
      blocked = true;
      watchStall(ctrl.desiredSize ?? 1);
    }
  };
  /**
   * Drops the reader if it takes nothing for the stall timeout. A reader
   * that takes some chunks but not all of them is slow, not stuck: the
   * watch starts again from the queue it left.
   */
  const watchStall = (queue: number) => {
    const ms = opts.stallTimeoutMs;
    if (ms === undefined) return;
    stallTimer = setTimeout(() => {
      if (!blocked || !open) return;
      const now = ctrl.desiredSize ?? 1;
      if (now > queue) return watchStall(now);
      opts.onStall?.();
      fail(new DOMException("the client stopped reading", "AbortError"));
    }, ms);
  };
  const renderStep = (p: number, k: number): string => {
    let out = "";
    const plan = plans[p];
    const { lengths, finishReasons } = plan.spec;
    const mine = texts[p] ??= new Array(plan.choices);
    for (let j = 0; j < lengths.length; j++) {
      const len = lengths[j];
      if (k >= len) continue;
      emitted++;
      const usage = opts.continuousUsage
        ? { prompt: total.prompt, completion: emitted, cached: total.cached }
        : null;
      const text = (mine[j] ??= plan.text(j)).next();
      out += fmt.token(p * n + j, text, k, k === len - 1 ? finishReasons[j] : null, usage);
    }
    return out;
  };
  const renderEnd = (p: number): string => {
    endRendered[p] = true;
    let out = "";
    const { lengths, finishReasons } = plans[p].spec;
    for (let j = 0; j < lengths.length; j++) {
      if (lengths[j] === 0) out += fmt.empty(p * n + j, finishReasons[j]);
    }
    if (++endedCount === plans.length) {
      if (opts.includeUsage) out += fmt.usage(total);
      out += fmt.end();
    }
    return out;
  };
  /**
   * Renders what plan p owes, a burst at a time; stops early (false) when
   * the queue fills up.
   */
  const render = (p: number): boolean => {
    while (renderedSteps[p] < emittedSteps[p]) {
      buffered += renderStep(p, renderedSteps[p]++);
      if (buffered.length >= RENDER_BURST) {
        flush();
        if (blocked || !open) return false;
      }
    }
    if (done[p] && !endRendered[p]) buffered += renderEnd(p);
    return true;
  };
  const finishIfDone = () => {
    flush();
    if (open && endedCount === plans.length) {
      open = false;
      clearTimeout(stallTimer);
      ctrl.close();
      ended();
    }
  };
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      ctrl = c;
    },
    // Called when the reader waits on an empty queue.
    pull() {
      if (!blocked || !open) return;
      blocked = false;
      clearTimeout(stallTimer);
      for (let p = 0; p < plans.length; p++) if (!render(p)) return;
      finishIfDone();
    },
    cancel: cancelAll,
  });

  const sinks = plans.map((_, p): JobSink => ({
    onStep(_job, k) {
      emittedSteps[p] = k + 1;
      if (!blocked && open) render(p);
    },
    onPause: flush,
    onDone() {
      done[p] = true;
      if (!blocked && open && render(p)) finishIfDone();
    },
    onAbort: () => fail(new DOMException("the server is shutting down", "AbortError")),
  }));
  jobs = submitAll(engine, plans, sinks, opts.arrival);
  if (open) {
    release = opts.onLong?.();
    const signal = opts.signal?.();
    // A client that left before we got here never fires "abort".
    if (signal?.aborted) cancelAll();
    else signal?.addEventListener("abort", cancelAll, { once: true });
  }
  return body;
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
): Promise<void> | null {
  let pending = plans.length;
  let resolve: (() => void) | undefined;
  let abort: ((reason: Error) => void) | undefined;
  const sink: JobSink = {
    onDone() {
      if (--pending === 0) resolve?.();
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
      for (const j of jobs) engine.cancel(j);
      reject(reason);
    };
    const gone = () => abort?.(new DOMException("client disconnected", "AbortError"));
    // A client that left before we got here never fires "abort".
    if (s?.aborted) gone();
    else s?.addEventListener("abort", gone, { once: true });
  });
}
