/**
 * The checks a request's tool list goes through (the definitions against
 * the reference's schema, the parameters against contradictions), memoized
 * per pod: agents send the same tools with every request, and checking a
 * schema costs far more than writing its JSON text as the memo's key.
 */
import type { ToolDef } from "./tool.ts";

/** What is known of one tool list: each check's problem (null: none), once made. */
export interface ToolListChecks {
  /** "Tool validation failed: …"'s text after the colon. */
  invalid?: string | null;
  /** Why no arguments satisfy one of the parameters. */
  unsatisfiable?: string | null;
}

/** Tool lists remembered at most (the oldest is dropped first). */
const MAX_LISTS = 256;
/** Longer lists are checked every time rather than held. */
const MAX_KEY_CHARS = 64 * 1024;

export class ToolCheckCache {
  readonly #lists = new Map<string, ToolListChecks>();

  /**
   * The record of `tools` (a fresh, unremembered one for a huge list). The
   * key is written again by each check: cheaper than a WeakMap from the
   * request's list, whose entries tax every garbage collection.
   */
  of(tools: readonly ToolDef[]): ToolListChecks {
    const key = JSON.stringify(tools);
    if (key.length > MAX_KEY_CHARS) return {};
    let rec = this.#lists.get(key);
    if (rec === undefined) {
      if (this.#lists.size >= MAX_LISTS) {
        this.#lists.delete(this.#lists.keys().next().value!);
      }
      rec = {};
      this.#lists.set(key, rec);
    }
    return rec;
  }
}
