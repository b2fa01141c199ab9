/**
 * The simulator's state, built once from the configuration: the current
 * config (replaced atomically by admin updates), the engine, the model
 * registry, the tokenizer, the seeded RNG and the readiness flags. Routes
 * receive this object; nothing here knows about HTTP.
 */
import type { Config, LoadedConfig } from "./config.ts";
import { Engine } from "./engine.ts";
import { levelFromVerbosity, Logger, type LogLevel } from "./log.ts";
import { ModelRegistry } from "./models.ts";
import { Rng } from "./rng.ts";
import { regexTokenizer, type Tokenizer } from "./tokenizer.ts";

/** Sleep-mode callbacks; `tags` are /wake_up's (empty when none were given). */
export interface SleepHook {
  sleep?(): void;
  wake?(tags: readonly string[]): void;
}

export class Simulator {
  #cfg: Config;
  readonly engine: Engine;
  readonly models: ModelRegistry;
  readonly log: Logger;
  readonly tokenizer: Tokenizer = regexTokenizer;
  readonly rng: Rng;
  readonly startedAt = performance.now();
  sleeping = false;
  /** Env VLLM_SERVER_DEV_MODE=1 at start-up: with enable-sleep-mode it unlocks /sleep. */
  devMode = false;
  /** Run on /sleep and /wake_up (e.g. the KV cache clears and re-enables itself). */
  readonly sleepHooks: SleepHook[] = [];

  constructor(loaded: LoadedConfig, log?: Logger) {
    const cfg = loaded.config;
    this.#cfg = cfg;
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

export function loggerFor(cfg: Config): Logger {
  let level: LogLevel = cfg["log-level"];
  if (cfg.v > 0) level = levelFromVerbosity(cfg.v);
  return new Logger(level, cfg["log-format"]);
}
