/**
 * The request-lifecycle engine: one instance drives every generation
 * endpoint. It admits requests (max-num-seqs running, a bounded FIFO waiting
 * queue, the max-loras rule), paces each request's output steps against
 * absolute deadlines, releases everything a cancelled request held, and
 * records phase timestamps for the metrics. It knows nothing about HTTP: a
 * route hands it a JobSpec and a JobSink that turns steps into bytes.
 */
import type { Config } from "./config.ts";
import type { KvPrompt } from "./kv/block_manager.ts";
import { ApiError } from "./errors.ts";
import { interTokenMs, prefillMs } from "./latency.ts";
import type { Rng } from "./rng.ts";
import { processAlarm } from "./alarm.ts";
import { type TimerHandle, TimerQueue } from "./timers.ts";

export type FinishReason =
  | "stop"
  | "length"
  | "tool_calls"
  | "remote_decode"
  | "cache_threshold";

export interface JobSpec {
  /** Adapter name when the request targets a LoRA adapter, else null. */
  lora: string | null;
  promptTokens: number;
  cachedTokens: number;
  /** Output tokens of each choice, decided before the request runs. */
  lengths: number[];
  finishReasons: FinishReason[];
  /** P/D decode side: prefill is a KV-cache transfer. */
  remotePrefill: boolean;
  /**
   * A job with no output that still takes its prefill time (embeddings).
   * Other zero-step jobs (cache_threshold answers) end at once.
   */
  prefillOnly?: boolean;
  /** The request's max_tokens (or equivalent), for the metrics. */
  maxTokensParam: number | null;
  /** The prompt's KV blocks, when the simulator keeps a KV cache. */
  kv?: KvPrompt;
  /** The request's cache_hit_threshold (chat and completions), in [0, 1]. */
  cacheHitThreshold?: number;
  /** Config snapshot taken on arrival: a request never sees a mix. */
  cfg: Config;
  rng: Rng;
}

export interface JobSink {
  /**
   * Step k is due: emit token k of every choice longer than k. Optional: a
   * non-streaming answer only needs onDone, and a burst of steps is then
   * passed over in one go.
   */
  onStep?(job: Job, k: number): void;
  /**
   * Every step due now was emitted and the job sleeps until its next
   * deadline: the end of a burst, when a sink that gathers steps hands them
   * on (onDone ends the last burst).
   */
  onPause?(job: Job): void;
  /** Every step was emitted (also called at once for a zero-step job). */
  onDone(job: Job): void;
  /**
   * The engine ended the job before its last step (shutdown past its
   * deadline): the sink ends its answer. Not called for Engine.cancel, whose
   * caller already knows.
   */
  onAbort?(job: Job): void;
}

/** Phase timestamps on the performance.now() scale (ms); NaN until reached. */
export interface Phases {
  arrival: number;
  start: number;
  firstToken: number;
  lastToken: number;
  end: number;
}

export type JobState = "waiting" | "running" | "done" | "cancelled";

let nextJobId = 1;

export class Job {
  readonly id = nextJobId++;
  state: JobState = "waiting";
  readonly phases: Phases;
  /** Output steps: the longest choice (0 once a cache_threshold answer is decided at start). */
  steps: number;
  /** Next step to emit and its absolute deadline. */
  step = 0;
  nextAt = 0;
  /** The job's timer entry, reused for every step (pending while pos >= 0). */
  timer: TimerHandle | null = null;
  /** Set when the job starts: its timer callback, made once rather than per token. */
  wake: () => void = () => {};
  /** Every later step shares one deadline (zero inter-token latency, no jitter). */
  noGaps = false;
  /** Whether the sink or an observer wants one call per step. */
  perStep = true;
  /** `arrival`: performance.now() when the request reached the engine. */
  constructor(readonly spec: JobSpec, readonly sink: JobSink, arrival = performance.now()) {
    this.phases = { arrival, start: NaN, firstToken: NaN, lastToken: NaN, end: NaN };
    let steps = 0;
    for (const len of spec.lengths) if (len > steps) steps = len;
    this.steps = steps;
  }
  /** Wall-clock arrival (ms since epoch). */
  get arrivalWall(): number {
    return performance.timeOrigin + this.phases.arrival;
  }
  /** Tokens emitted so far over all choices. */
  get emittedTokens(): number {
    let n = 0;
    for (const len of this.spec.lengths) n += Math.min(len, this.step);
    return n;
  }
}

/**
 * A resource a job must hold while it runs besides a sequence slot (the KV
 * cache's blocks): asked before a job leaves the queue, taken when it
 * starts, given back when it ends or is cancelled while running.
 */
export interface AdmissionGate {
  /** Whether the job's resources are free now; a job that does not fit holds the queue (FCFS). */
  fits(job: Job): boolean;
  /**
   * Takes them; may set job.spec.cachedTokens (prefill time and usage follow
   * it). True: the job is answered at once without output (a cache_threshold
   * answer: its lengths and finish reasons were rewritten).
   */
  take(job: Job): boolean;
  give(job: Job): void;
}

/** Engine events, for the metrics and anything else that watches load. */
export interface EngineObserver {
  queued?(job: Job): void;
  started?(job: Job): void;
  /**
   * Step k was emitted at `now`. Called before phases.lastToken is updated,
   * so it still holds the previous token's time.
   */
  token?(job: Job, k: number, now: number): void;
  /**
   * The batched form of `token`: steps from..to-1 were emitted together at
   * `now` (one call per burst; a zero-latency answer is a single burst).
   * Called before any of them updates phases.lastToken. If the job is
   * cancelled part-way through the burst, `cancelled` follows.
   */
  tokens?(job: Job, from: number, to: number, now: number): void;
  finished?(job: Job): void;
  cancelled?(job: Job, wasRunning: boolean): void;
}

export class Engine {
  readonly running = new Set<Job>();
  readonly waiting: Job[] = [];
  /** Adapter → number of running requests using it. */
  readonly runningLoras = new Map<string, number>();
  readonly observers: EngineObserver[] = [];
  readonly timers: TimerQueue;
  /** The KV cache's blocks, when the simulator keeps one. */
  gate: AdmissionGate | null = null;
  /** A waiting job's blocks do not fit: nothing behind it may start. */
  #heldByGate = false;
  #admitting = false;
  #again = false;
  #idle: (() => void)[] = [];

  constructor(private readonly config: () => Config, timers?: TimerQueue) {
    this.timers = timers ?? new TimerQueue({ alarm: processAlarm });
  }

  get runningCount(): number {
    return this.running.size;
  }
  get waitingCount(): number {
    return this.waiting.length;
  }

  /** Adapters of waiting requests, in queue order, without duplicates. */
  waitingLoras(): string[] {
    const out = new Set<string>();
    for (const j of this.waiting) if (j.spec.lora !== null) out.add(j.spec.lora);
    return [...out];
  }

  /**
   * Admits or queues a request; a full queue answers 429 at once.
   * `arrival`: when the request reached the server (performance.now(); the
   * router stamps it before the body is read).
   */
  submit(spec: JobSpec, sink: JobSink, arrival = performance.now()): Job {
    const job = new Job(spec, sink, arrival);
    // Jobs already waiting go first (FIFO): if the limits were raised since
    // they queued, start them before this one can take a slot.
    if (this.waiting.length > 0) this.#admit();
    const cfg = this.config();
    if (
      this.running.size < cfg["max-num-seqs"] && this.#loraFits(job, cfg) &&
      (this.gate === null || (!this.#heldByGate && this.gate.fits(job)))
    ) {
      // Started at once: timed from its arrival (no queue time), unless
      // others were let in ahead of it just now.
      this.#start(job, this.waiting.length > 0 ? performance.now() : arrival);
      return job;
    }
    if (this.waiting.length >= cfg["max-waiting-queue-length"]) {
      throw new ApiError(
        429,
        "Failed to enqueue request, waiting requests queue is full",
      );
    }
    this.waiting.push(job);
    for (const o of this.observers) o.queued?.(job);
    return job;
  }

  /** Releases everything the job holds; a no-op once it has ended. */
  cancel(job: Job): void {
    if (job.state === "done" || job.state === "cancelled") return;
    const wasRunning = job.state === "running";
    if (wasRunning) {
      if (job.timer) this.timers.cancel(job.timer);
      job.timer = null;
      this.#release(job);
    } else {
      const i = this.waiting.indexOf(job);
      if (i >= 0) this.waiting.splice(i, 1);
    }
    job.state = "cancelled";
    job.phases.end = performance.now();
    for (const o of this.observers) o.cancelled?.(job, wasRunning);
    this.#admit();
    this.#checkIdle();
  }

  /** Ends every running and waiting job, telling each sink (shutdown). */
  abortAll(): void {
    for (const job of [...this.waiting, ...this.running]) {
      this.cancel(job);
      job.sink.onAbort?.(job);
    }
  }

  /**
   * Starts waiting requests that now fit. The engine calls this itself when a
   * request ends; call it after raising max-num-seqs or max-loras at run time.
   */
  reschedule(): void {
    this.#admit();
  }

  /** Resolves once nothing is running or waiting (for graceful shutdown). */
  idle(): Promise<void> {
    if (this.running.size === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #loraFits(job: Job, cfg: Config): boolean {
    const lora = job.spec.lora;
    if (lora === null || this.runningLoras.has(lora)) return true;
    return this.runningLoras.size < cfg["max-loras"];
  }

  #start(job: Job, now = performance.now()): void {
    job.state = "running";
    this.running.add(job);
    const lora = job.spec.lora;
    if (lora !== null) this.runningLoras.set(lora, (this.runningLoras.get(lora) ?? 0) + 1);
    job.phases.start = now;
    if (this.gate?.take(job)) job.steps = 0;
    for (const o of this.observers) o.started?.(job);
    const spec = job.spec;
    if (job.steps === 0 && !spec.prefillOnly) return this.#finish(job, now);
    // Fixed for the job's life, so decided once here, not at every wake-up.
    job.wake = () => this.#advance(job);
    job.noGaps = spec.cfg["inter-token-latency"] === 0 &&
      spec.cfg["inter-token-latency-std-dev"] === 0;
    job.perStep = job.sink.onStep !== undefined || this.observers.some((o) => o.token);
    job.nextAt = now +
      prefillMs(spec.cfg, spec.rng, {
        promptTokens: spec.promptTokens,
        cachedTokens: spec.cachedTokens,
        remotePrefill: spec.remotePrefill,
        running: this.running.size,
      });
    this.#advance(job, now);
  }

  /**
   * Emits every step that is due, then sleeps until the next deadline.
   * `now` is a clock reading the caller just took, if it has one.
   */
  #advance = (job: Job, now = performance.now()): void => {
    const spec = job.spec;
    const observers = this.observers;
    // With no gaps the rest of the answer is one burst (no interval to draw).
    const { noGaps, perStep } = job;
    while (job.state === "running") {
      // Read the clock again only when the last reading says "not yet": a
      // burst of due tokens (zero latency, or catching up) costs one read.
      if (!this.timers.isDue(job.nextAt, now)) now = performance.now();
      if (!this.timers.isDue(job.nextAt, now)) {
        job.timer = this.timers.at(job.nextAt, job.wake, job.timer);
        job.sink.onPause?.(job);
        return;
      }
      // A prefill-only job ends when its prefill does.
      if (job.steps === 0) return this.#finish(job, now);
      const from = job.step;
      const to = noGaps ? job.steps : from + 1;
      for (let i = 0; i < observers.length; i++) observers[i].tokens?.(job, from, to, now);
      if (!perStep) {
        job.step = to;
        if (from === 0) job.phases.firstToken = now;
        job.phases.lastToken = now;
      } else {
        for (let k = from; k < to; k++) {
          job.step = k + 1;
          for (let i = 0; i < observers.length; i++) observers[i].token?.(job, k, now);
          if (k === 0) job.phases.firstToken = now;
          job.phases.lastToken = now;
          job.sink.onStep?.(job, k);
          // A sink may cancel the job (its reader went away).
          if (job.state !== "running") return;
        }
      }
      if (job.step >= job.steps) return this.#finish(job, now);
      // Absolute schedule: the next deadline follows the previous deadline,
      // not the moment we woke up, so timer lateness never accumulates.
      job.nextAt += interTokenMs(spec.cfg, spec.rng, this.running.size);
    }
  };

  /** `now`: when the last step was emitted (the engine's latest clock reading). */
  #finish(job: Job, now = performance.now()): void {
    if (job.state !== "running") return;
    this.#release(job);
    job.state = "done";
    job.phases.end = now;
    if (Number.isNaN(job.phases.firstToken)) job.phases.firstToken = now;
    if (Number.isNaN(job.phases.lastToken)) job.phases.lastToken = now;
    job.sink.onDone(job);
    for (const o of this.observers) o.finished?.(job);
    this.#admit();
    this.#checkIdle();
  }

  #release(job: Job): void {
    this.running.delete(job);
    this.gate?.give(job);
    const lora = job.spec.lora;
    if (lora === null) return;
    const n = (this.runningLoras.get(lora) ?? 1) - 1;
    if (n <= 0) this.runningLoras.delete(lora);
    else this.runningLoras.set(lora, n);
  }

  /** Starts waiting jobs in FIFO order while they fit; re-entrant safe. */
  #admit(): void {
    if (this.#admitting) {
      this.#again = true;
      return;
    }
    this.#admitting = true;
    try {
      do {
        this.#again = false;
        this.#heldByGate = false;
        const cfg = this.config();
        for (let i = 0; i < this.waiting.length;) {
          if (this.running.size >= cfg["max-num-seqs"]) break;
          const job = this.waiting[i];
          // A job whose adapter cannot run yet stays put without blocking
          // the jobs behind it.
          if (!this.#loraFits(job, cfg)) {
            i++;
            continue;
          }
          // Blocks are first come, first served: a job whose blocks do not
          // fit holds back the jobs behind it (vLLM's scheduler).
          if (this.gate !== null && !this.gate.fits(job)) {
            this.#heldByGate = true;
            break;
          }
          this.waiting.splice(i, 1);
          this.#start(job);
        }
      } while (this.#again);
    } finally {
      this.#admitting = false;
    }
  }

  #checkIdle(): void {
    if (this.running.size > 0 || this.waiting.length > 0 || this.#idle.length === 0) return;
    const waiters = this.#idle;
    this.#idle = [];
    for (const w of waiters) w();
  }
}
