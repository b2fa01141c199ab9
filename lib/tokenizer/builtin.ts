/**
 * The built-in ("dummy") tokenizer, byte for byte the reference simulator's
 * (tokenizers.md, "The built-in tokenizer"):
 *
 * - tokens are the matches of the Go RE2 pattern
 *   `(\{|\}|:|,|-|\.|\?|\!|;|@|#|\$|%|\^|&|\*|\(|\)|\+|\-|_|~|/|\\|>|<|\[|\]|=|"|'|\w+)(\s*)`
 *   with ASCII classes: one listed symbol, or a run of `[0-9A-Za-z_]`, each
 *   with the whitespace `[\t\n\f\r ]` that follows it; characters no
 *   alternative matches (non-ASCII letters, `|`, leading whitespace, …) are
 *   dropped;
 * - a token's id is the FNV-1a 32 of its UTF-8 bytes;
 * - chat messages render as `### role(tool_call_id): content[name(args)]\n`.
 *
 * The pattern is a hand-written scanner over a class table: counting a
 * prompt allocates nothing, and the regex engine's per-match objects are
 * never made.
 *
 * `decode` maps ids back through a table of the tokens this instance has
 * produced (bounded, see {@link REVERSE_TABLE_CAP}) over a read-only base
 * vocabulary (the built-in sentences'); each simulator owns an instance.
 */

import type { ChatMessage } from "../chat.ts";
import { SENTENCES, sentenceTable } from "../sentences.ts";
import { TextCache } from "./text_cache.ts";
import {
  type Encoding,
  fnv1a32,
  fnv1a32Range,
  type SentenceTable,
  type Tokenizer,
  type TokenizerKind,
} from "../tokenizer.ts";

/** Character classes: 0 = dropped, 1 = whitespace, 2 = word, 3 = symbol. */
const DROPPED = 0;
const SPACE = 1;
const WORD = 2;
const SYMBOL = 3;
const CLASS = new Uint8Array(128);
for (const c of "\t\n\f\r ") CLASS[c.charCodeAt(0)] = SPACE;
for (let c = 0; c < 128; c++) {
  if (
    (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) ||
    c === 0x5f
  ) CLASS[c] = WORD;
}
// The pattern's symbols; `_` among them: alternatives are tried left to
// right, so an underscore that starts a token is a token of its own.
for (const c of "{}:,-.?!;@#$%^&*()+_~/\\><[]=\"'") CLASS[c.charCodeAt(0)] = SYMBOL;

/**
 * End of the match that starts at `p`, or -1 when the character at `p` is
 * dropped. Callers step over dropped characters themselves.
 */
function matchEnd(text: string, p: number, n: number): number {
  let c = text.charCodeAt(p);
  const cls = c < 128 ? CLASS[c] : DROPPED;
  if (cls === SYMBOL) p++;
  else if (cls === WORD) {
    // Inside a word, `_` is a word character again.
    while (++p < n) {
      c = text.charCodeAt(p);
      if (c >= 128 || (CLASS[c] !== WORD && c !== 0x5f)) break;
    }
  } else return -1;
  while (p < n) {
    c = text.charCodeAt(p);
    if (c >= 128 || CLASS[c] !== SPACE) break;
    p++;
  }
  return p;
}

/** The reference's tokens of `text`: every match, left to right. */
export function splitText(text: string): string[] {
  const out: string[] = [];
  const n = text.length;
  let p = 0;
  while (p < n) {
    const e = matchEnd(text, p, n);
    if (e < 0) {
      p++;
      continue;
    }
    out.push(text.slice(p, e));
    p = e;
  }
  return out;
}

/** The number of tokens of `text`, without building them. */
export function countText(text: string): number {
  const n = text.length;
  let p = 0;
  let k = 0;
  while (p < n) {
    const e = matchEnd(text, p, n);
    if (e < 0) p++;
    else {
      k++;
      p = e;
    }
  }
  return k;
}

/**
 * Output pieces: the matches, with the characters the pattern drops attached
 * to the piece before them (to the first piece when they lead the text), so
 * the pieces concatenate to `text`. A text with no match at all is one piece,
 * so that it still reaches the client.
 */
export function outputPieces(text: string): string[] {
  const out: string[] = [];
  const n = text.length;
  let start = 0; // where the current piece began (dropped characters included)
  let p = 0;
  let matched = false;
  while (p < n) {
    const e = matchEnd(text, p, n);
    if (e < 0) {
      p++;
      continue;
    }
    if (matched) {
      out.push(text.slice(start, p));
      start = p;
    }
    matched = true;
    p = e;
  }
  if (n > 0) out.push(text.slice(start));
  return out;
}

/** Chat messages as the reference renders them for its built-in tokenizer. */
export function builtinChatText(messages: readonly ChatMessage[]): string {
  let s = "";
  for (const m of messages) s += "### " + plainText(m) + "\n";
  return s;
}

/**
 * The messages' plain text without the separators: what the reference cuts
 * the render sidecar's token strings from.
 */
export function flattenMessages(messages: readonly ChatMessage[]): string {
  let s = "";
  for (const m of messages) s += plainText(m);
  return s;
}

/** `role(tool_call_id): content[name(args)]…`, the reference's PlainText(true). */
function plainText(m: ChatMessage): string {
  let s = m.role;
  if (m.toolCallId) s += "(" + m.toolCallId + ")";
  s += ": " + m.content;
  if (m.toolCalls) { for (const c of m.toolCalls) s += "[" + c.name + "(" + c.arguments + ")]"; }
  return s;
}

/** Texts at least this long have their ids remembered, up to this many characters in all. */
const CACHED_TEXT_MIN = 256;
const CACHED_TEXT_CHARS = 4_000_000;

/** Maximum number of learned (non-permanent) entries kept for `decode`. */
export const REVERSE_TABLE_CAP = 1_000_000;
const GENERATION_CAP = REVERSE_TABLE_CAP / 2;

/**
 * Longer tokens (a run of letters the splitter keeps whole) are not kept for
 * decoding: the table holds ids, not whatever text clients send, so it stays
 * small in bytes as well as in entries.
 */
export const MAX_LEARNED_TOKEN = 256;

/** A vocabulary for decoding: each token's id → the token (a fixed, trusted list). */
export function vocabularyOf(tokens: Iterable<string>): Map<number, string> {
  const vocab = new Map<number, string>();
  for (const t of tokens) {
    const id = fnv1a32(t);
    if (!vocab.has(id)) vocab.set(id, t);
  }
  return vocab;
}

/** The built-in sentences, cut by the built-in tokenizer (pure, computed once per process). */
export const BUILTIN_SENTENCES: SentenceTable = sentenceTable(SENTENCES, outputPieces);

/** Every token of the built-in sentences, by id: each instance's base vocabulary. */
export const BUILTIN_VOCABULARY: ReadonlyMap<number, string> = vocabularyOf(
  BUILTIN_SENTENCES.tokens.flat(),
);

/**
 * The built-in tokenizer. Tokenizing is pure; what an instance keeps is its
 * reverse table for `decode`: two bounded generations of the ids it has
 * encoded. Each simulator owns an instance, so one pod's clients never fill
 * another's table.
 */
export class BuiltinTokenizer implements Tokenizer {
  readonly kind: TokenizerKind = "built-in";
  readonly sentences = BUILTIN_SENTENCES;
  readonly #cache = new TextCache(CACHED_TEXT_CHARS, 256 * 1024);
  #current = new Map<number, string>();
  #previous = new Map<number, string>();

  encode(text: string): Encoding {
    // A long text's ids are remembered (the KV cache asks for a repeated
    // prompt's ids at every request); short ones cost less than the lookup.
    if (text.length < CACHED_TEXT_MIN) return { ids: this.#ids(text), text };
    let ids = this.#cache.get(text);
    if (ids === undefined) this.#cache.set(text, ids = this.#ids(text));
    return { ids, text };
  }

  /** Hashed in place, no token cut out. */
  #ids(text: string): number[] {
    const ids: number[] = [];
    const n = text.length;
    let p = 0;
    while (p < n) {
      const e = matchEnd(text, p, n);
      if (e < 0) p++;
      else {
        ids.push(fnv1a32Range(text, p, e));
        p = e;
      }
    }
    return ids;
  }

  /** Ids shown to a client (/tokenize, render) can come back to /detokenize: learn them. */
  remember(enc: Encoding): void {
    this.#learnAll(enc.text);
  }

  /** Learns the text's tokens for decoding; returns their ids. */
  #learnAll(text: string): number[] {
    const toks = splitText(text);
    const ids = new Array<number>(toks.length);
    for (let i = 0; i < toks.length; i++) {
      const id = ids[i] = fnv1a32(toks[i]);
      if (!BUILTIN_VOCABULARY.has(id) && !this.#current.has(id)) this.#learn(id, toks[i]);
    }
    return ids;
  }

  encodeChat(messages: readonly ChatMessage[]): Encoding {
    return this.encode(builtinChatText(messages));
  }

  count(text: string): number {
    return countText(text);
  }

  countChat(messages: readonly ChatMessage[]): number {
    return countText(builtinChatText(messages));
  }

  tokenStrings(enc: Encoding): string[] {
    return splitText(enc.text);
  }

  pieces(text: string): string[] {
    return outputPieces(text);
  }

  pieceIds(piece: string): number[] {
    // Output ids (generate) are shown: they decode back.
    return this.#learnAll(piece);
  }

  decode(ids: readonly number[]): string | null {
    let s = "";
    for (let i = 0; i < ids.length; i++) {
      const t = this.#lookup(ids[i]);
      if (t === undefined) return null;
      s += t;
    }
    return s;
  }

  /** Keeps the id's string (the caller checked it is not known yet). */
  #learn(id: number, tok: string): void {
    if (tok.length > MAX_LEARNED_TOKEN) return;
    if (this.#current.size >= GENERATION_CAP) {
      this.#previous = this.#current;
      this.#current = new Map();
    }
    this.#current.set(id, tok);
  }

  #lookup(id: number): string | undefined {
    return BUILTIN_VOCABULARY.get(id) ?? this.#current.get(id) ?? this.#previous.get(id);
  }
}
