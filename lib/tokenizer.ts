/**
 * The built-in regex tokenizer (used when no real tokenizer is available or
 * `--force-dummy-tokenizer` is set).
 *
 * Tokens, left to right:
 * - a run of letters / marks / digits / underscore, with its leading whitespace;
 * - a single other character (punctuation, symbol, emoji code point, …), with
 *   its leading whitespace;
 * - trailing whitespace at the end of the text, alone.
 *
 * Concatenating the tokens reproduces the input exactly. A token's id is the
 * unsigned FNV-1a 32-bit hash of its UTF-8 bytes, so ids are stable across runs
 * and processes.
 *
 * `decode` maps ids back through a reverse table filled by every `encode` call
 * (bounded, see {@link REVERSE_TABLE_CAP}) plus a read-only base vocabulary
 * given at construction (the built-in sentences', see {@link vocabularyOf}).
 * Unknown ids decode to the placeholder ` <id>` (e.g. ` <12345>`), so a decode
 * is never silently lossy; `tryDecode` answers null instead (/detokenize's 400).
 */

export interface Tokenizer {
  readonly name: string;
  tokenize(text: string): string[];
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
  /** The text of `ids`, or null when any id is not in the reverse table. */
  tryDecode(ids: readonly number[]): string | null;
  count(text: string): number;
}

/** Unicode-aware token pattern; shared, never recompiled. */
const TOKEN_RE = /\s*[\p{L}\p{M}\p{N}_]+|\s*[^\s\p{L}\p{M}\p{N}_]|\s+/gu;

/** Maximum number of learned (non-permanent) entries kept for `decode`. */
export const REVERSE_TABLE_CAP = 1_000_000;
const GENERATION_CAP = REVERSE_TABLE_CAP / 2;

/**
 * Longer tokens (a run of letters the splitter keeps whole) are not kept for
 * decoding: the table holds ids, not whatever text clients send, so it stays
 * small in bytes as well as in entries.
 */
export const MAX_LEARNED_TOKEN = 256;

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a 32-bit hash of the UTF-8 encoding of `s` (unsigned). No allocation. */
export function fnv1a32(s: string): number {
  let h = FNV_OFFSET;
  const n = s.length;
  for (let i = 0; i < n; i++) {
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

// ---------------------------------------------------------------------------
// Scanning.

/** ASCII character classes: 1 = whitespace, 2 = word, 0 = other. */
const ASCII_CLASS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) ASCII_CLASS[c] = 1;
  else if (
    (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) ||
    c === 0x5f
  ) ASCII_CLASS[c] = 2;
}

/**
 * End offset of the token starting at `p` using the fast ASCII path, or -1 when
 * a non-ASCII character is involved (the caller then falls back to the regex).
 */
function asciiTokenEnd(text: string, p: number, n: number): number {
  let q = p;
  let c = 0;
  while (q < n) {
    c = text.charCodeAt(q);
    if (c >= 0x80) return -1;
    if (ASCII_CLASS[c] !== 1) break;
    q++;
  }
  if (q === n) return n;
  if (ASCII_CLASS[c] === 0) return q + 1;
  q++;
  while (q < n) {
    c = text.charCodeAt(q);
    if (c >= 0x80) return -1;
    if (ASCII_CLASS[c] !== 2) return q;
    q++;
  }
  return n;
}

/** End offset of the token starting at `p` (< n) via the regex. */
function regexTokenEnd(text: string, p: number): number {
  TOKEN_RE.lastIndex = p;
  TOKEN_RE.test(text); // always matches: every character belongs to some class
  return TOKEN_RE.lastIndex;
}

/** End offset of the token starting at `p` (< n); the ASCII fast path is used by `count`. */
function tokenEnd(text: string, p: number, n: number): number {
  const e = asciiTokenEnd(text, p, n);
  return e >= 0 ? e : regexTokenEnd(text, p);
}

function tokenizeText(text: string): string[] {
  // String#match with a global regex is native and resets lastIndex itself.
  return text.match(TOKEN_RE) ?? [];
}

function countTokens(text: string): number {
  const n = text.length;
  let p = 0;
  let k = 0;
  while (p < n) {
    p = tokenEnd(text, p, n);
    k++;
  }
  return k;
}

/**
 * The built-in regex tokenizer. Tokenizing is pure; what an instance keeps is
 * its reverse table for `decode`: a read-only base vocabulary (the built-in
 * sentences', shared by every instance) and two bounded generations of ids
 * it has encoded. Each simulator owns an instance, so one pod's clients never
 * fill another's table.
 */
export class RegexTokenizer implements Tokenizer {
  readonly name = "regex";
  #current = new Map<number, string>();
  #previous = new Map<number, string>();

  constructor(private readonly vocab: ReadonlyMap<number, string> = new Map()) {}

  tokenize(text: string): string[] {
    return tokenizeText(text);
  }

  count(text: string): number {
    return countTokens(text);
  }

  encode(text: string): number[] {
    const toks = tokenizeText(text);
    const out: number[] = new Array(toks.length);
    for (let i = 0; i < toks.length; i++) {
      const tok = toks[i];
      const id = fnv1a32(tok);
      this.#learn(id, tok);
      out[i] = id;
    }
    return out;
  }

  decode(ids: readonly number[]): string {
    let s = "";
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const t = this.#lookup(id);
      s += t !== undefined ? t : ` <${id}>`;
    }
    return s;
  }

  tryDecode(ids: readonly number[]): string | null {
    let s = "";
    for (let i = 0; i < ids.length; i++) {
      const t = this.#lookup(ids[i]);
      if (t === undefined) return null;
      s += t;
    }
    return s;
  }

  #learn(id: number, tok: string): void {
    if (tok.length > MAX_LEARNED_TOKEN || this.vocab.has(id) || this.#current.has(id)) return;
    if (this.#current.size >= GENERATION_CAP) {
      this.#previous = this.#current;
      this.#current = new Map();
    }
    this.#current.set(id, tok);
  }

  #lookup(id: number): string | undefined {
    return this.vocab.get(id) ?? this.#current.get(id) ?? this.#previous.get(id);
  }
}

/** A vocabulary for decoding: each token's id → the token (a fixed, trusted list). */
export function vocabularyOf(tokens: Iterable<string>): Map<number, string> {
  const vocab = new Map<number, string>();
  for (const t of tokens) {
    const id = fnv1a32(t);
    if (!vocab.has(id)) vocab.set(id, t);
  }
  return vocab;
}

/**
 * An instance for code that only tokenizes (its table is never shared with
 * a simulator's): the sentences' own tokenizing, tests.
 */
export const regexTokenizer: Tokenizer = new RegexTokenizer();
