/**
 * KV events on the wire (kv-cache.md, "Batch payload", "Events"): a batch
 * `[ts, events, data_parallel_rank]`, events positional (the reference's
 * legacy arrays, BlockStored with 9 elements) or, with
 * --use-vllm-map-event-format, maps in vLLM's key order.
 */
import type { KvEvent } from "./block_manager.ts";
import { MsgpackWriter } from "./msgpack.ts";

export type EventFormat = "array" | "map";

function writeEvent(w: MsgpackWriter, e: KvEvent, format: EventFormat): void {
  if (e.type === "AllBlocksCleared") {
    if (format === "array") w.array(1).str(e.type);
    else w.map(1).str("type").str(e.type);
    return;
  }
  if (e.type === "BlockRemoved") {
    if (format === "array") w.array(3).str(e.type);
    else w.map(3).str("type").str(e.type).str("block_hashes");
    w.array(1).uint64(e.hash);
    if (format === "map") w.str("medium");
    w.str("GPU");
    return;
  }
  const map = format === "map";
  if (map) {
    // lora_id and lora_name are left out when nil (the reference's omission).
    w.map(6 + (e.loraId !== null ? 1 : 0) + (e.loraName !== null ? 1 : 0));
    w.str("type").str(e.type).str("block_hashes");
  } else w.array(9).str(e.type);
  w.array(e.hashes.length);
  for (const h of e.hashes) w.uint64(h);
  if (map) {
    w.str("parent_block_hash");
    if (e.parent === null) w.nil();
    else w.uint64(e.parent);
  } else w.uint64(e.parent ?? 0n);
  if (map) w.str("token_ids");
  w.array(e.tokens.length);
  for (const t of e.tokens) w.uint32(t);
  if (map) w.str("block_size");
  w.uint(e.blockSize);
  if (map) {
    if (e.loraId !== null) w.str("lora_id").uint(e.loraId);
    w.str("medium").str("GPU");
    if (e.loraName !== null) w.str("lora_name").str(e.loraName);
    return;
  }
  if (e.loraId === null) w.nil();
  else w.uint(e.loraId);
  w.str("GPU");
  if (e.loraName === null) w.nil();
  else w.str(e.loraName);
  w.nil(); // extra_keys
}

/** One batch's payload; `ts` in seconds (the nanosecond clock / 1e9). */
export function encodeBatch(
  w: MsgpackWriter,
  ts: number,
  events: readonly KvEvent[],
  rank: number,
  format: EventFormat,
): Uint8Array {
  w.reset().array(3).float64(ts).array(events.length);
  for (const e of events) writeEvent(w, e, format);
  w.uint(rank);
  return w.bytes();
}
