/**
 * The one tokenizer interface (tokenizers.md): every count, id, token string
 * and decode goes through it, whichever of the three implementations was
 * chosen at start-up (lib/tokenizer/select.ts):
 * - built-in: the reference simulator's regex splitter with FNV-1a 32 ids
 *   (lib/tokenizer/builtin.ts);
 * - Hugging Face: a model's tokenizer.json and chat template, in-process
 *   (lib/tokenizer/huggingface.ts);
 * - render sidecar: a vLLM render server over HTTP (lib/tokenizer/render_client.ts).
 *
 * Prompt encodings may be asynchronous (the sidecar answers over HTTP); the
 * in-process tokenizers answer synchronously, so the hot path never awaits.
 * Output-side calls (pieces, decode) are always synchronous.
 */

import type { ChatMessage } from "./chat.ts";
import type { MultimodalFeatures } from "./api/vllm/features.ts";

export type TokenizerKind = "built-in" | "huggingface" | "render";

/** A prompt as the tokenizer encoded it. */
export interface Encoding {
  ids: number[];
  /** The text that was encoded (a chat's rendering); what token strings are cut from. */
  text: string;
  /** Multimodal features from the render sidecar, passed through unchanged. */
  features?: MultimodalFeatures;
}

/** What a chat template may be given besides the messages. */
export interface ChatOptions {
  /** The request's tools, in OpenAI's `{type:"function", function:{...}}` form. */
  tools?: readonly unknown[];
}

/** An answer text cut into the tokens it is sent as. */
export interface SentenceTable {
  /** Each sentence's output pieces (a trailing space included, as the reference's sentences). */
  readonly tokens: readonly (readonly string[])[];
  /** Each sentence's pieces joined. */
  readonly texts: readonly string[];
  /** No piece needs escaping in a JSON string (frames are then written without it). */
  readonly jsonSafe: boolean;
}

export interface Tokenizer {
  readonly kind: TokenizerKind;
  /** The vocabulary's size (one past the highest id), when the tokenizer has one. */
  readonly vocabSize?: number;
  /** A text prompt's ids (completions, /tokenize, embeddings, render). */
  encode(text: string, addSpecialTokens?: boolean): Encoding | Promise<Encoding>;
  /** A chat's ids: the model's chat template, or the built-in chat text. */
  encodeChat(messages: readonly ChatMessage[], opts?: ChatOptions): Encoding | Promise<Encoding>;
  /**
   * How many tokens `encode` would give: all usage and the context check
   * need, which a tokenizer may answer without building the ids.
   */
  count(text: string, addSpecialTokens?: boolean): number | Promise<number>;
  /** How many tokens `encodeChat` would give. */
  countChat(messages: readonly ChatMessage[], opts?: ChatOptions): number | Promise<number>;
  /**
   * The encoding's ids are being shown to a client (/tokenize, render): a
   * tokenizer whose ids are hashes keeps them for `decode`.
   */
  remember?(enc: Encoding): void;
  /** The token strings of an encoding, one per id (/tokenize's `token_strs`). */
  tokenStrings(enc: Encoding): string[];
  /**
   * Output pieces of `text` (echo answers, JSON answers): one string per
   * token, concatenating to `text`, never splitting a character.
   */
  pieces(text: string): string[];
  /** The ids of an output piece (generate's token ids). */
  pieceIds(piece: string): number[];
  /** The text of `ids`, or null when an id cannot be decoded. */
  decode(ids: readonly number[]): string | null;
  /** The built-in sentences cut into this tokenizer's tokens (random answers). */
  readonly sentences: SentenceTable;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a 32-bit hash of the UTF-8 encoding of `s` (unsigned). No allocation. */
export function fnv1a32(s: string): number {
  return fnv1a32Range(s, 0, s.length);
}

/** FNV-1a 32 of `s.slice(start, end)`, without making the slice. */
export function fnv1a32Range(s: string, start: number, n: number): number {
  let h = FNV_OFFSET;
  for (let i = start; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, FNV_PRIME);
      continue;
    }
    if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const lo = s.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        i++;
        c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
        h = Math.imul(h ^ (0xf0 | (c >> 18)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | ((c >> 12) & 0x3f)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
        continue;
      }
    }
    // BMP character (lone surrogates encode as U+FFFD, like TextEncoder).
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    h = Math.imul(h ^ (0xe0 | (c >> 12)), FNV_PRIME);
    h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), FNV_PRIME);
    h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
  }
  return h >>> 0;
}
