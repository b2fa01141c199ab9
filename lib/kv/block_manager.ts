/**
 * The prefix cache of one simulator (kv-cache.md, "Cache behaviour"): blocks
 * keyed by (hash, displayed model), reference-counted while requests run,
 * kept idle for reuse after, evicted in the spec's order when room is
 * needed. It knows nothing of HTTP or ZMQ: it reports what happened as
 * events, and the engine asks it whether a request's blocks fit before the
 * request leaves the queue.
 *
 * A request takes all its blocks when it starts and gives them back when it
 * ends; `take`/`give` work block by block, so an engine that grows sequences
 * step by step (and preempts) can call them as it goes.
 */
import type { BlockHash } from "./block_hash.ts";

/** The events a KV-aware router consumes, before their wire encoding. */
export type KvEvent =
  | {
    type: "BlockStored";
    hashes: bigint[];
    /** The block before the first stored one; null when the stored run starts the prompt. */
    parent: bigint | null;
    tokens: number[];
    blockSize: number;
    loraId: number | null;
    loraName: string | null;
  }
  | { type: "BlockRemoved"; hash: bigint }
  | { type: "AllBlocksCleared" };

/** A request's prompt, as the cache sees it. */
export interface KvPrompt {
  /** The displayed model (the adapter's name for a LoRA request). */
  model: string;
  blocks: readonly BlockHash[];
  /** The prompt's token ids (BlockStored carries the stored blocks' tokens). */
  tokens: readonly number[];
  lora: { id: number; name: string } | null;
}

interface Block {
  readonly key: string;
  readonly hash: BlockHash;
  readonly model: string;
  refs: number;
  /** When it became unused (its order among the model's idle blocks). */
  idleSince: number;
}

/** The blocks a started request holds, given back when it ends. */
export interface KvHold {
  readonly blocks: Block[];
  /** The cache generation it was taken in: a hold from before a clear gives back nothing. */
  readonly epoch: number;
  /** Tokens of the leading run of blocks that were already cached. */
  readonly cachedTokens: number;
}

export class BlockManager {
  /** model → key → block. */
  readonly #blocks = new Map<string, Map<string, Block>>();
  /** model → its idle blocks, oldest first (a Map keeps insertion order). */
  readonly #idle = new Map<string, Map<Block, true>>();
  #used = 0;
  #count = 0;
  #epoch = 0;
  enabled = true;

  constructor(
    readonly capacity: number,
    readonly blockSize: number,
    /** Whether a model is loaded: idle blocks of unloaded models are evicted first. */
    private readonly isLoaded: (model: string) => boolean,
    private readonly emit: (e: KvEvent) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Blocks referenced by running requests. */
  get used(): number {
    return this.#used;
  }
  /** Blocks cached, used or idle. */
  get size(): number {
    return this.#count;
  }
  /** Used blocks over the capacity: vllm:kv_cache_usage_perc. */
  get usage(): number {
    return this.capacity === 0 ? 0 : this.#used / this.capacity;
  }

  /** Whether the prompt could ever fit (more full blocks than the cache holds never do). */
  canEverFit(p: KvPrompt): boolean {
    return !this.enabled || p.blocks.length <= this.capacity;
  }

  /** Whether the prompt's blocks fit now: idle blocks can always be evicted to make room. */
  fits(p: KvPrompt): boolean {
    if (!this.enabled) return true;
    let need = 0;
    const byKey = this.#blocks.get(p.model);
    for (const b of p.blocks) {
      const have = byKey?.get(b.key);
      if (have === undefined || have.refs === 0) need++;
    }
    return this.#used + need <= this.capacity;
  }

  /** The leading run of cached blocks, in tokens (a lookup only: nothing changes). */
  cachedTokens(p: KvPrompt): number {
    if (!this.enabled) return 0;
    const byKey = this.#blocks.get(p.model);
    let run = 0;
    while (run < p.blocks.length && byKey?.has(p.blocks[run].key)) run++;
    return run * this.blockSize;
  }

  /**
   * Takes the prompt's blocks (the caller checked `fits`): cached ones are
   * referenced, new ones inserted (evicting idle blocks first when full);
   * one BlockStored names the blocks after the leading cached run.
   */
  take(p: KvPrompt): KvHold {
    if (!this.enabled) return { blocks: [], epoch: this.#epoch, cachedTokens: 0 };
    let byKey = this.#blocks.get(p.model);
    if (byKey === undefined) this.#blocks.set(p.model, byKey = new Map());
    const n = p.blocks.length;
    let run = 0;
    while (run < n && byKey.has(p.blocks[run].key)) run++;
    const held = new Array<Block>(n);
    // Cached blocks first, so making room for the new ones never evicts them.
    for (let i = 0; i < n; i++) {
      const b = byKey.get(p.blocks[i].key);
      if (b !== undefined) held[i] = this.#ref(b);
    }
    for (let i = 0; i < n; i++) {
      if (held[i] !== undefined) continue;
      if (this.#count >= this.capacity) this.#evictOne();
      const h = p.blocks[i];
      const b: Block = { key: h.key, hash: h, model: p.model, refs: 1, idleSince: 0 };
      byKey.set(h.key, b);
      this.#count++;
      this.#used++;
      held[i] = b;
    }
    if (run < n) {
      const bs = this.blockSize;
      this.emit({
        type: "BlockStored",
        hashes: p.blocks.slice(run).map((b) => b.wire),
        parent: run > 0 ? p.blocks[run - 1].wire : null,
        tokens: p.tokens.slice(run * bs, n * bs) as number[],
        blockSize: bs,
        loraId: p.lora?.id ?? null,
        loraName: p.lora?.name ?? null,
      });
    }
    return { blocks: held, epoch: this.#epoch, cachedTokens: run * this.blockSize };
  }

  /** Gives a request's blocks back: a block no request holds becomes idle, still cached. */
  give(hold: KvHold): void {
    if (hold.epoch !== this.#epoch) return;
    const now = this.now();
    for (const b of hold.blocks) {
      if (--b.refs > 0) continue;
      b.idleSince = now;
      this.#used--;
      let idle = this.#idle.get(b.model);
      if (idle === undefined) this.#idle.set(b.model, idle = new Map());
      idle.set(b, true);
    }
  }

  /** Sleep: every block dropped, one AllBlocksCleared, the cache off until `enable`. */
  clear(): void {
    this.#blocks.clear();
    this.#idle.clear();
    this.#used = 0;
    this.#count = 0;
    this.#epoch++;
    this.enabled = false;
    this.emit({ type: "AllBlocksCleared" });
  }

  enable(): void {
    this.enabled = true;
  }

  #ref(b: Block): Block {
    if (b.refs++ === 0) {
      this.#used++;
      this.#idle.get(b.model)?.delete(b);
    }
    return b;
  }

  /**
   * Evicts the idle block that has been idle longest among models that are
   * not loaded, else among all; one BlockRemoved.
   */
  #evictOne(): void {
    let victim: Block | null = null;
    let victimLoaded = true;
    for (const [model, idle] of this.#idle) {
      const first = idle.keys().next();
      if (first.done) continue;
      const b = first.value;
      const loaded = this.isLoaded(model);
      if (
        victim === null || (victimLoaded && !loaded) ||
        (loaded === victimLoaded && b.idleSince < victim.idleSince)
      ) {
        victim = b;
        victimLoaded = loaded;
      }
    }
    // The caller checked `fits`: there is always an idle block to evict.
    if (victim === null) throw new Error("KV cache full with no idle block to evict");
    this.#idle.get(victim.model)!.delete(victim);
    this.#blocks.get(victim.model)!.delete(victim.key);
    this.#count--;
    this.emit({ type: "BlockRemoved", hash: victim.hash.wire });
  }
}
