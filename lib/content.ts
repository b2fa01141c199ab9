/**
 * Response-content building blocks: how long an answer is, and which tokens
 * it is made of (random built-in text, or an echo of the prompt).
 */

import type { Rng } from "./rng.ts";
import type { SentenceTable } from "./tokenizer.ts";
import { BUILTIN_SENTENCES } from "./tokenizer/builtin.ts";

export type LengthFinishReason = "stop" | "length";

export interface ResponseLengthOptions {
  /** max_tokens / max_completion_tokens, when the request set one. */
  maxTokens?: number;
  ignoreEos: boolean;
  /** Prompt length in tokens (used only when maxTokens is absent). */
  promptTokens: number;
  /** Context window (used only when maxTokens is absent). */
  maxModelLen: number;
}

export interface ResponseLength {
  /** Number of tokens to generate. */
  length: number;
  /** The limit M the length was drawn against. */
  limit: number;
  /** "length" when length == limit, else "stop". */
  finishReason: LengthFinishReason;
}

/**
 * Cumulative bucket probabilities (weights 0.2, 0.3, 0.2, 0.05, 0.1); the
 * remaining 0.15 is the probability of answering with exactly M tokens.
 */
const CUMULATIVE = [0.2, 0.5, 0.7, 0.75, 0.85] as const;
const BUCKETS = CUMULATIVE.length;
const FIXED_BUCKET = 20;
/** Above this limit buckets are FIXED_BUCKET wide (except the fourth). */
const EQUAL_SPLIT_MAX = BUCKETS * FIXED_BUCKET + 1; // 101
const NO_LIMIT_MEAN = 40;
const NO_LIMIT_SD = 20;
const NO_LIMIT_UNIFORM_BELOW = 20;

/** Inclusive [start, end] of bucket `i` over 1..m-1 (m ≥ 7). */
function bucketStart(m: number, i: number): number {
  if (m <= EQUAL_SPLIT_MAX) return Math.floor(((m - 1) * i) / BUCKETS) + 1;
  if (i < BUCKETS - 1) return i * FIXED_BUCKET + 1;
  return m - FIXED_BUCKET + 1; // last bucket: the 19 values below m, as the reference has it
}

function bucketEnd(m: number, i: number): number {
  if (m <= EQUAL_SPLIT_MAX) return Math.floor(((m - 1) * (i + 1)) / BUCKETS);
  if (i < BUCKETS - 2) return (i + 1) * FIXED_BUCKET;
  if (i === BUCKETS - 2) return m - FIXED_BUCKET; // the fourth stretches
  return m - 1;
}

/** Inclusive [start, end] of bucket `i` for limit `m` (m ≥ 7), as the reference simulator cuts them. */
export function bucketRange(m: number, i: number): [number, number] {
  return [bucketStart(m, i), bucketEnd(m, i)];
}

/** Length for a bounded answer with limit `m` (spec "random mode, length"). */
function boundedLength(rng: Rng, m: number): number {
  if (m <= 1) return m;
  if (m <= BUCKETS + 1) return rng.int(1, m);
  // One uniform draw picks both "exactly M" (top 15%) and the bucket; this is
  // the same as normalising the bucket weights by 0.85.
  const r = rng.next();
  if (r >= CUMULATIVE[BUCKETS - 1]) return m;
  let i = 0;
  while (i < BUCKETS - 1 && r >= CUMULATIVE[i]) i++;
  return rng.int(bucketStart(m, i), bucketEnd(m, i));
}

/**
 * Decides the answer length (random mode).
 *
 * - With maxTokens = M: ignoreEos → M; M ≤ 1 → M; M ≤ 6 → uniform 1..M; else
 *   15% → M, otherwise a weighted bucket over 1..M-1, uniform inside it.
 * - Without maxTokens: M = max(1, maxModelLen − promptTokens); ignoreEos → M
 *   (the model runs to the context window); M < 20 → uniform 1..M; else a
 *   normal draw (mean 40, sd 20), rounded and redrawn until it is in 1..M.
 *
 * finishReason is "length" exactly when length == M.
 */
export function responseLength(rng: Rng, opts: ResponseLengthOptions): ResponseLength {
  let m: number;
  let length: number;
  if (opts.maxTokens !== undefined && opts.maxTokens !== null) {
    m = Math.max(0, Math.floor(opts.maxTokens));
    length = opts.ignoreEos ? m : boundedLength(rng, m);
  } else {
    m = Math.max(1, Math.floor(opts.maxModelLen - opts.promptTokens));
    if (opts.ignoreEos) length = m;
    else if (m < NO_LIMIT_UNIFORM_BELOW) length = rng.int(1, m);
    else {
      do {
        length = Math.round(rng.normal(NO_LIMIT_MEAN, NO_LIMIT_SD));
      } while (length < 1 || length > m);
    }
  }
  return { length, limit: m, finishReason: length === m ? "length" : "stop" };
}

/** An answer's tokens and the text they make up. */
export interface TokenText {
  /** The token strings; empty when they were not asked for. */
  tokens: string[];
  /** The tokens joined, built without joining them one by one. */
  text: string;
  /** Number of tokens. */
  length: number;
}

/**
 * Token strings of sentences picked at random and concatenated (each ends
 * with its space), cut to exactly `n` tokens: RandomTextStream's draws.
 * Uses the pre-tokenized sentences; nothing is re-tokenized.
 */
export function randomText(
  rng: Rng,
  n: number,
  withTokens = true,
  table: SentenceTable = BUILTIN_SENTENCES,
): TokenText {
  if (!(n > 0)) return { tokens: [], text: "", length: 0 };
  const stream = new RandomTextStream(rng, table);
  // A complete (non-streamed) answer needs only the text and the count.
  if (!withTokens) return { tokens: [], text: stream.take(n), length: n };
  const tokens = new Array<string>(n);
  for (let i = 0; i < n; i++) tokens[i] = stream.next();
  return { tokens, text: tokens.join(""), length: n };
}

/** randomText's token strings. */
export function randomTokens(rng: Rng, n: number, table?: SentenceTable): string[] {
  return randomText(rng, n, true, table).tokens;
}

/**
 * An answer's text, produced as it is sent rather than held in advance: a
 * queued request costs nothing per output token. Token by token (streams)
 * or the rest at once (complete answers); the same draws either way.
 */
export interface TextStream {
  /** The next token's string. */
  next(): string;
  /** The next `n` tokens, joined. */
  take(n: number): string;
}

/** Sentences picked at random, the draws of randomText. */
export class RandomTextStream implements TextStream {
  #toks: readonly string[] = [];
  #index = 0;
  #pos = 0;
  constructor(private readonly rng: Rng, private readonly table: SentenceTable) {}

  #nextSentence(): void {
    this.#index = this.rng.pickIndex(this.table.tokens.length);
    this.#toks = this.table.tokens[this.#index];
    this.#pos = 0;
  }

  next(): string {
    if (this.#pos >= this.#toks.length) this.#nextSentence();
    return this.#toks[this.#pos++];
  }

  take(n: number): string {
    let text = "";
    while (n > 0) {
      if (this.#pos >= this.#toks.length) {
        this.#nextSentence();
        // A whole sentence contributes its pre-joined text.
        if (this.#toks.length <= n) {
          text += this.table.texts[this.#index];
          n -= this.#toks.length;
          this.#pos = this.#toks.length;
          continue;
        }
      }
      text += this.#toks[this.#pos++];
      n--;
    }
    return text;
  }
}

/** A fixed token list (echo mode), shared by every choice that reads it. */
export class TokenListStream implements TextStream {
  #pos = 0;
  constructor(private readonly tokens: readonly string[]) {}
  next(): string {
    return this.tokens[this.#pos++] ?? "";
  }
  take(n: number): string {
    const end = Math.min(this.tokens.length, this.#pos + n);
    let text = "";
    for (; this.#pos < end; this.#pos++) text += this.tokens[this.#pos];
    return text;
  }
}

/** A fixed token list, then another stream's tokens (a recorded answer padded with built-in text). */
export class ListThenStream implements TextStream {
  #pos = 0;
  constructor(private readonly tokens: readonly string[], private readonly rest: TextStream) {}
  next(): string {
    return this.#pos < this.tokens.length ? this.tokens[this.#pos++] : this.rest.next();
  }
  take(n: number): string {
    let text = "";
    for (; n > 0 && this.#pos < this.tokens.length; n--) text += this.tokens[this.#pos++];
    return n > 0 ? text + this.rest.take(n) : text;
  }
}

/**
 * Another stream's tokens, cut after `chars` characters (a stop string):
 * tokens past the cut are empty, so the count of tokens stays the same.
 */
export class CutTextStream implements TextStream {
  #left: number;
  constructor(private readonly inner: TextStream, chars: number) {
    this.#left = chars;
  }
  next(): string {
    return this.#clip(this.inner.next());
  }
  take(n: number): string {
    return this.#clip(this.inner.take(n));
  }
  #clip(s: string): string {
    if (s.length <= this.#left) {
      this.#left -= s.length;
      return s;
    }
    const out = s.slice(0, this.#left);
    this.#left = 0;
    return out;
  }
}
