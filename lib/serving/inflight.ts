/**
 * The pod's in-flight requests by request id, whatever carried them: the
 * gRPC Abort RPC ends each one listed (grpc.md). A request registers only
 * once it outlives its submission (a zero-latency answer is over before
 * anyone could abort it), so the hot path pays nothing.
 */
export class InflightCalls {
  readonly #calls = new Map<string, Set<() => void>>();

  /** Registers `abort` under `id`; the function returned forgets it. */
  add(id: string, abort: () => void): () => void {
    let set = this.#calls.get(id);
    if (!set) this.#calls.set(id, set = new Set());
    set.add(abort);
    return () => {
      set.delete(abort);
      if (set.size === 0 && this.#calls.get(id) === set) this.#calls.delete(id);
    };
  }

  /** Aborts every request registered under `id` (none: nothing happens). */
  abort(id: string): void {
    for (const a of [...(this.#calls.get(id) ?? [])]) a();
  }

  /** Requests registered right now. */
  get size(): number {
    return this.#calls.size;
  }
}
