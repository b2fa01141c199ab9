/**
 * Texts' token ids remembered, least recently used dropped first, bounded in
 * characters: a repeated prompt (a load test's, a system prompt, earlier
 * turns) is encoded once. The ids arrays are shared: callers never change them.
 */
export class TextCache {
  #map = new Map<string, number[]>();
  #chars = 0;
  constructor(private readonly budget: number, private readonly maxText: number) {}

  get(text: string): number[] | undefined {
    const v = this.#map.get(text);
    if (v !== undefined) {
      // Most recently used last.
      this.#map.delete(text);
      this.#map.set(text, v);
    }
    return v;
  }

  set(text: string, ids: number[]): void {
    if (text.length > this.maxText || this.#map.has(text)) return;
    this.#map.set(text, ids);
    this.#chars += text.length;
    for (const [k] of this.#map) {
      if (this.#chars <= this.budget) break;
      this.#map.delete(k);
      this.#chars -= k.length;
    }
  }
}
