/**
 * The `max-loras` slots adapters are loaded into (kv-cache.md): an adapter
 * takes a slot when one of its requests starts and keeps it until another
 * adapter needs it. Its 1-based slot is the `lora_id` of its BlockStored
 * events, and the adapters in slots count as loaded for eviction.
 */
export class LoraSlots {
  readonly #names: (string | null)[];
  readonly #used: number[];
  #clock = 0;

  constructor(size: number) {
    this.#names = new Array(Math.max(1, size)).fill(null);
    this.#used = new Array(this.#names.length).fill(0);
  }

  /**
   * The adapter's slot (1-based), taking one if it has none: a free slot,
   * else the least recently used slot whose adapter `busy` says is idle.
   */
  take(name: string, busy: (name: string) => boolean): number {
    let i = this.#names.indexOf(name);
    if (i < 0) {
      i = this.#names.indexOf(null);
      if (i < 0) {
        let best = -1;
        for (let j = 0; j < this.#names.length; j++) {
          if (busy(this.#names[j]!)) continue;
          if (best < 0 || this.#used[j] < this.#used[best]) best = j;
        }
        // The engine runs at most max-loras adapters at once: one slot is idle.
        i = best < 0 ? 0 : best;
      }
      this.#names[i] = name;
    }
    this.#used[i] = ++this.#clock;
    return i + 1;
  }

  has(name: string): boolean {
    return this.#names.includes(name);
  }
}
