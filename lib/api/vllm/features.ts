/**
 * Multimodal `features` the built-in tokenizer synthesises for chat messages
 * with image, audio or video parts (tokenizers.md, "Multimodal features"):
 * deterministic hashes, so a repeated request hits the same KV blocks, and
 * placeholders spread evenly over the prompt. Byte-for-byte the reference's.
 */
import { fnv1a32 } from "../../tokenizer.ts";

export type Modality = "image" | "audio" | "video";

/** One media part of a chat request, in message and part order. */
export interface MediaItem {
  modality: Modality;
  /** The url, or the audio's data: what the hash is taken of. */
  source: string;
}

export interface Placeholder {
  offset: number;
  length: number;
}

export interface MultimodalFeatures {
  mm_hashes: Partial<Record<Modality, string[]>>;
  mm_placeholders: Partial<Record<Modality, Placeholder[]>>;
  kwargs_data: Partial<Record<Modality, string[]>>;
}

/** The hash prefix of each modality. */
const PREFIX: Record<Modality, string> = { image: "img", audio: "audio", video: "video" };

/**
 * The reference marshals Go maps, whose keys come out sorted: this order
 * keeps the bytes equal.
 */
const KEY_ORDER: readonly Modality[] = ["audio", "image", "video"];

/**
 * The `features` of a prompt of `totalTokens` tokens with these media items,
 * or undefined when there are none.
 */
export function synthesizeFeatures(
  items: readonly MediaItem[],
  totalTokens: number,
): MultimodalFeatures | undefined {
  if (items.length === 0) return undefined;
  const span = Math.max(Math.floor(totalTokens / items.length), 1);
  const hashes: Partial<Record<Modality, string[]>> = {};
  const placeholders: Partial<Record<Modality, Placeholder[]>> = {};
  const kwargs: Partial<Record<Modality, string[]>> = {};
  const seen: Record<Modality, number> = { image: 0, audio: 0, video: 0 };
  items.forEach((it, i) => {
    const index = seen[it.modality]++;
    const hash = `sim_${PREFIX[it.modality]}_${index}_${fnv1a32(it.source).toString(16)}`;
    let offset = i * span;
    if (offset >= totalTokens) offset = totalTokens - 1;
    if (offset < 0) offset = 0;
    let length = span;
    if (offset + length > totalTokens) length = totalTokens - offset;
    if (length < 1) length = 1;
    (hashes[it.modality] ??= []).push(hash);
    (placeholders[it.modality] ??= []).push({ offset, length });
    // The hash is ASCII, so btoa sees the same bytes Go's base64 does.
    (kwargs[it.modality] ??= []).push(btoa(hash));
  });
  return {
    mm_hashes: ordered(hashes),
    mm_placeholders: ordered(placeholders),
    kwargs_data: ordered(kwargs),
  };
}

function ordered<T>(byModality: Partial<Record<Modality, T>>): Partial<Record<Modality, T>> {
  const out: Partial<Record<Modality, T>> = {};
  for (const k of KEY_ORDER) if (byModality[k] !== undefined) out[k] = byModality[k];
  return out;
}

/**
 * A chat encoding's features: the render sidecar's own, or the built-in
 * tokenizer's stubs for the messages' media; none from an in-process model
 * tokenizer (no image processor).
 */
export function featuresOf(
  kind: string,
  media: readonly MediaItem[],
  totalTokens: number,
  given?: MultimodalFeatures,
): MultimodalFeatures | undefined {
  return kind === "built-in" ? synthesizeFeatures(media, totalTokens) : given;
}

/** The features' items as the block hasher takes them, by placeholder offset. */
export function mmItems(
  f: MultimodalFeatures,
): { offset: number; length: number; hash: string }[] {
  const out: { offset: number; length: number; hash: string }[] = [];
  for (const m of Object.keys(f.mm_hashes) as Modality[]) {
    const hashes = f.mm_hashes[m] ?? [];
    const places = f.mm_placeholders[m] ?? [];
    for (let i = 0; i < hashes.length && i < places.length; i++) {
      out.push({ offset: places[i].offset, length: places[i].length, hash: hashes[i] });
    }
  }
  return out.sort((a, b) => a.offset - b.offset);
}
