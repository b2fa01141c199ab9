/**
 * The simulator's state, built once from the configuration: the current
 * config (replaced atomically by admin updates), the engine, the model
 * registry, the tokenizer, the seeded RNG and the readiness flags. Routes
 * receive this object; nothing here knows about HTTP.
 */
import type { Config, LoadedConfig } from "./config.ts";
import { Engine } from "./engine.ts";
import { levelFromVerbosity, Logger, type LogLevel } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { ModelRegistry } from "./models.ts";
import { HeldRequests } from "./failures.ts";
import { derivedSeed, Rng } from "./rng.ts";
import type { Tokenizer } from "./tokenizer.ts";
import { KvCache } from "./kv/kv_cache.ts";
import type { KvEvent } from "./kv/block_manager.ts";
import { BuiltinTokenizer } from "./tokenizer/builtin.ts";
import { ToolCheckCache } from "./tools/checks.ts";
import { LogprobMemo } from "./serving/logprobs.ts";
import { InflightCalls } from "./serving/inflight.ts";
import type { Dataset } from "./dataset/dataset.ts";

/** Sleep-mode callbacks; `tags` are /wake_up's (empty when none were given). */
export interface SleepHook {
  sleep?(): void;
  wake?(tags: readonly string[]): void;
}

export class Simulator {
  #cfg: Config;
  readonly engine: Engine;
  readonly models: ModelRegistry;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** This simulator's own (a loaded tokenizer's files are shared read-only). */
  readonly tokenizer: Tokenizer;
  readonly rng: Rng;
  readonly startedAt = performance.now();
  /** The engine id P/D peers see: one per rank, derived from the seed so replays match. */
  readonly engineId: string;
  /** The port this rank listens on (known once listening; port 0 picks one). */
  port: number;
  /** The host peers should dial: the listening address, loopback for a wildcard. */
  readonly reachableHost: string;
  sleeping = false;
  /** Env VLLM_SERVER_DEV_MODE=1 at start-up: with enable-sleep-mode it unlocks /sleep. */
  devMode = false;
  /** Requests held open by `timeout` failures. */
  readonly held = new HeldRequests();
  /** The tool lists this pod has checked (agents repeat theirs). */
  readonly toolChecks = new ToolCheckCache();
  /** Recorded answers (--dataset-path), shared read-only by the process's pods; null: none. */
  dataset: Dataset | null = null;
  /** Requests that outlived their submission, by request id (the gRPC Abort RPC). */
  readonly inflight = new InflightCalls();
  /** Logprob entries written for this pod's answers (they repeat). */
  readonly logprobMemo = new LogprobMemo();
  /** Run on /sleep and /wake_up (e.g. the KV cache clears and re-enables itself). */
  readonly sleepHooks: SleepHook[] = [];
  /** The prefix cache, with --enable-kvcache (none in --mm-encoder-only mode). */
  readonly kv: KvCache | null = null;
  /** Where KV events go (the ZMQ publisher, when there is one). */
  onKvEvent: ((e: KvEvent) => void) | null = null;
  /** The process's pods as Prometheus targets (GET /fleet/targets), shared read-only. */
  fleet: readonly FleetTarget[] = [];

  constructor(
    loaded: LoadedConfig,
    log?: Logger,
    readonly rank = 0,
    tokenizer: Tokenizer = new BuiltinTokenizer(),
  ) {
    const cfg = loaded.config;
    this.tokenizer = tokenizer;
    this.#cfg = cfg;
    this.port = cfg.port;
    this.reachableHost = cfg.host === "0.0.0.0" || cfg.host === "::" ? "127.0.0.1" : cfg.host;
    this.engineId = engineIdFor(cfg.seed, rank);
    this.log = log ?? loggerFor(cfg);
    this.rng = new Rng(cfg.seed);
    this.engine = new Engine(() => this.#cfg);
    this.models = new ModelRegistry(
      cfg.model,
      cfg["served-model-name"],
      cfg["max-model-len"],
      cfg["max-cpu-loras"],
      cfg["lora-modules"],
    );
    this.metrics = new Metrics(this);
    if (cfg["enable-kvcache"] && !cfg["mm-encoder-only"]) {
      const kv = new KvCache(
        cfg,
        new Set([cfg.model, ...cfg["served-model-name"]]),
        (lora) => this.engine.runningLoras.has(lora),
        (e) => this.onKvEvent?.(e),
      );
      this.kv = kv;
      this.engine.gate = kv;
      this.sleepHooks.push({
        sleep: () => {
          kv.blocks.clear();
          this.engine.reschedule(); // waiting requests no longer wait for blocks
        },
        wake: (tags) => {
          if (tags.length === 0 || tags.includes("kv_cache")) kv.blocks.enable();
        },
      });
    }
  }

  /** The current configuration; a request snapshots it on arrival. */
  get config(): Config {
    return this.#cfg;
  }

  /** Swaps in a validated configuration in one step (admin updates). */
  replaceConfig(next: Config): void {
    this.#cfg = next;
  }

  /** Ready once startup-duration has passed, and not while sleeping. */
  isReady(): boolean {
    return !this.sleeping &&
      performance.now() - this.startedAt >= this.#cfg["startup-duration"];
  }

  /**
   * A request's own random stream: from its `seed` when given, else forked
   * from the server's seeded stream in arrival order (so a replayed request
   * sequence reproduces lengths, texts and jitter).
   */
  requestRng(seed?: number): Rng {
    return seed === undefined ? this.rng.fork() : new Rng(seed);
  }
}

export function loggerFor(cfg: Config, context?: Record<string, unknown>): Logger {
  let level: LogLevel = cfg["log-level"];
  if (cfg.v > 0) level = levelFromVerbosity(cfg.v);
  return new Logger(level, cfg["log-format"], context);
}

/** One pod in Prometheus service discovery (file_sd / http_sd): its ranks' addresses and labels. */
export interface FleetTarget {
  targets: string[];
  labels: Record<string, string>;
}

/** Salt of the per-pod seeds of a fleet (--pods). */
const POD_SEED_SALT = 0x706f6473;

/** Pod p's seed in a fleet: pod 0 keeps the configured one (one pod is unchanged). */
export function podSeed(seed: number, pod: number): number {
  if (pod === 0) return seed;
  return Number(derivedSeed(seed, POD_SEED_SALT, pod) & 0x1fffffffffffffn);
}

/** Salt of the engine-id streams (any constant other streams do not use). */
const ENGINE_ID_SALT = 0x656e6769;

/**
 * Rank r's engine id: a UUID from the seed and the rank alone, so every rank
 * (and every process of a multi-process deployment) computes the same map
 * for GET /query without consuming the request generator.
 */
export function engineIdFor(seed: number, rank: number): string {
  return seededUuid(new Rng(derivedSeed(seed, ENGINE_ID_SALT, rank)));
}

/** A version-4-shaped UUID drawn from `rng`. */
function seededUuid(rng: Rng): string {
  const hex = Array.from({ length: 8 }, () => rng.nextU32().toString(16).padStart(8, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-` +
    `${"89ab"[rng.int(0, 3)]}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}
