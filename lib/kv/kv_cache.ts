/**
 * A simulator's KV cache (kv-cache.md): the block manager, the block hasher
 * and the LoRA slots, joined to the engine as its admission gate. A plan
 * attaches its prompt's blocks to the job (`prompt`); the engine asks
 * whether they fit before the job leaves the queue, and the job takes them
 * when it starts (which sets its cached tokens) and gives them back at its
 * end.
 */
import type { Config } from "../config.ts";
import type { AdmissionGate, Job } from "../engine.ts";
import { type BlockExtras, type BlockHash, BlockHasher } from "./block_hash.ts";
import { BlockManager, type KvEvent, type KvHold, type KvPrompt } from "./block_manager.ts";
import { LoraSlots } from "./lora_slots.ts";

export class KvCache implements AdmissionGate {
  readonly blocks: BlockManager;
  readonly hasher: BlockHasher;
  readonly slots: LoraSlots;
  readonly #holds = new Map<Job, KvHold>();
  /** Ids array → model → its blocks' hashes (weak: gone with the array). */
  readonly #hashed = new WeakMap<readonly number[], Map<string, readonly BlockHash[]>>();

  constructor(
    cfg: Config,
    /** --model and the served names: always loaded. */
    private readonly baseModels: ReadonlySet<string>,
    /** Whether an adapter has requests running (it then keeps its slot). */
    private readonly running: (lora: string) => boolean,
    emit: (e: KvEvent) => void,
  ) {
    this.hasher = new BlockHasher(cfg["prefix-caching-hash-algo"], cfg["hash-seed"]);
    this.slots = new LoraSlots(cfg["max-loras"]);
    this.blocks = new BlockManager(
      cfg["kv-cache-size"],
      cfg["block-size"],
      (m) => this.baseModels.has(m) || this.slots.has(m),
      emit,
    );
  }

  /**
   * A prompt's blocks under its displayed model (the adapter's name for a
   * LoRA request, whose slot is decided when it starts).
   */
  prompt(
    tokens: readonly number[],
    model: string,
    lora: string | null,
    extras?: BlockExtras,
  ): KvPrompt {
    // The tokenizers hand a repeated prompt the same ids array: its blocks
    // are hashed once per model.
    let byModel = extras ? undefined : this.#hashed.get(tokens);
    let blocks = byModel?.get(model);
    if (blocks === undefined) {
      blocks = this.hasher.hashes(tokens, this.blocks.blockSize, model, {
        ...extras,
        lora: lora ?? undefined,
      });
      if (!extras) {
        if (byModel === undefined) this.#hashed.set(tokens, byModel = new Map());
        byModel.set(model, blocks);
      }
    }
    return { model, blocks, tokens, lora: lora === null ? null : { id: 0, name: lora } };
  }

  fits(job: Job): boolean {
    const kv = job.spec.kv;
    return kv === undefined || this.blocks.fits(kv);
  }

  take(job: Job): boolean {
    const spec = job.spec;
    const kv = spec.kv;
    if (kv === undefined) return false;
    if (kv.lora !== null) kv.lora.id = this.slots.take(kv.lora.name, this.running);
    const hold = this.blocks.take(kv);
    spec.cachedTokens = hold.cachedTokens;
    this.#holds.set(job, hold);
    // cache_hit_threshold (kv-cache.md): decided now, after the blocks were stored.
    const global = spec.cfg["global-cache-hit-threshold"];
    const threshold = spec.cacheHitThreshold ?? (global > 0 ? global : undefined);
    if (threshold === undefined || spec.prefillOnly) return false;
    if (spec.finishReasons[0] === "cache_threshold") return false; // the header decided already
    const hit = spec.promptTokens > 0 ? hold.cachedTokens / spec.promptTokens : 0;
    if (!(hit < threshold)) return false;
    spec.lengths.fill(0);
    spec.finishReasons.fill("cache_threshold");
    return true;
  }

  give(job: Job): void {
    const hold = this.#holds.get(job);
    if (hold === undefined) return;
    this.#holds.delete(job);
    this.blocks.give(hold);
  }
}
