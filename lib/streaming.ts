/**
 * Runs generation plans through the engine and turns their steps into
 * output: a server-sent-events byte stream (one frame per token per choice,
 * formatted by the endpoint's ChunkFormat) or, for non-streaming answers, a
 * promise that settles when the last token would have been sent. A reader
 * that goes away cancels every job at once.
 */
import type { Engine, FinishReason, Job, JobSink } from "./engine.ts";
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
    for (const c of p.choices) completion += c.length;
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
}

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
  const cancelAll = () => {
    open = false;
    for (const j of jobs) engine.cancel(j);
  };
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      ctrl = c;
    },
    cancel: cancelAll,
  });
  // The frames of one burst of steps (a whole zero-latency answer, or tokens
  // caught up after a late timer) leave as one chunk: one encode and one
  // enqueue per burst instead of one per token. The engine says when a burst
  // ends (onPause, onDone). The runtime writes to the socket only after the
  // current task anyway, so no frame leaves later.
  let buffered = "";
  const flush = () => {
    if (!open || buffered === "") return;
    const s = buffered;
    buffered = "";
    try {
      ctrl.enqueue(encodeChunk(s));
    } catch {
      cancelAll();
    }
  };
  const send = (s: string) => {
    if (open) buffered += s;
  };
  const n = plans.length > 0 ? plans[0].choices.length : 0;
  let pending = plans.length;
  let emitted = 0;
  const total = usageOf(plans);
  const sinks = plans.map((plan, p): JobSink => ({
    onStep(_job, k) {
      let out = "";
      const choices = plan.choices;
      for (let j = 0; j < choices.length; j++) {
        const toks = choices[j].tokens;
        if (k >= toks.length) continue;
        emitted++;
        const last = k === toks.length - 1;
        const usage = opts.continuousUsage
          ? { prompt: total.prompt, completion: emitted, cached: total.cached }
          : null;
        out += fmt.token(p * n + j, toks[k], k, last ? choices[j].finishReason : null, usage);
      }
      send(out);
    },
    onPause: flush,
    onDone() {
      let out = "";
      plan.choices.forEach((c, j) => {
        if (c.length === 0) out += fmt.empty(p * n + j, c.finishReason);
      });
      if (--pending === 0) {
        if (opts.includeUsage) out += fmt.usage(total);
        out += fmt.end();
        send(out);
        flush();
        if (open) {
          open = false;
          ctrl.close();
        }
      } else {
        send(out);
        flush();
      }
    },
  }));
  jobs = submitAll(engine, plans, sinks, opts.arrival);
  if (open) {
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
  const sink: JobSink = {
    onDone() {
      if (--pending === 0) resolve?.();
    },
  };
  const sinks = new Array<JobSink>(plans.length).fill(sink);
  const jobs = submitAll(engine, plans, sinks, arrival);
  if (pending === 0) return null;
  return new Promise((res, reject) => {
    resolve = res;
    const s = signal?.();
    const abort = () => {
      for (const j of jobs) engine.cancel(j);
      reject(new DOMException("client disconnected", "AbortError"));
    };
    // A client that left before we got here never fires "abort".
    if (s?.aborted) abort();
    else s?.addEventListener("abort", abort, { once: true });
  });
}
