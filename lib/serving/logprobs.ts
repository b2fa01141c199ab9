/**
 * Synthetic logprobs (tools-and-logprobs.md, "Logprobs"): deterministic
 * values from a token's position in its answer and its rank among the
 * alternatives, written as each family's JSON. A stream's tokens get the
 * same values as the complete answer's (position = token index).
 */

/** −1.0 − (pos mod 3)·0.1, then − alt·0.5, in float64 in that order. */
export function logprob(pos: number, alt: number): number {
  const main = -1.0 - (pos % 3) * 0.1;
  return alt === 0 ? main : main - alt * 0.5;
}

const utf8 = new TextEncoder();

/** The UTF-8 bytes of `s` as a JSON array of ints (ASCII without an encoder). */
export function bytesJson(s: string): string {
  let out = "[";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) return `[${utf8.encode(s).join(",")}]`;
    out += i === 0 ? c : "," + c;
  }
  return out + "]";
}

/** UTF-8 length of `s`. */
export function byteLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

/** The j-th alternative of a token (j ≥ 1). */
export function alternative(token: string, j: number): string {
  return `${token}_${j}`;
}

/** The ASCII codes of "_0".."_9" as JSON array items, for the alternatives' bytes. */
const DIGIT_BYTES = Array.from({ length: 10 }, (_, d) => `,${48 + d}`);

/**
 * A token's pieces of JSON, made once and shared by its alternatives: its
 * quoted text without the closing quote, and its bytes without the closing
 * bracket (an alternative appends `_j` to both).
 */
function parts(token: string): { quoted: string; bytes: string } {
  const quoted = JSON.stringify(token);
  return { quoted: quoted.slice(0, -1), bytes: bytesJson(token).slice(0, -1) };
}

/** `{"token","logprob","bytes"` of the token (alt 0) or its alt-th alternative. */
function entry(p: { quoted: string; bytes: string }, pos: number, alt: number): string {
  if (alt === 0) {
    return `{"token":${p.quoted}","logprob":${logprob(pos, 0)},"bytes":${p.bytes}]`;
  }
  let digits = "";
  let bytes = "";
  for (const d of String(alt)) {
    digits += d;
    bytes += DIGIT_BYTES[d.charCodeAt(0) - 48];
  }
  const sep = p.bytes === "[" ? "" : ",";
  return `{"token":${p.quoted}_${digits}","logprob":${
    logprob(pos, alt)
  },"bytes":${p.bytes}${sep}95${bytes}]`;
}

/** k entries: the token itself, then k − 1 alternatives. */
function topList(p: { quoted: string; bytes: string }, pos: number, k: number): string {
  let out = "";
  for (let j = 0; j < k; j++) out += (j === 0 ? "" : ",") + entry(p, pos, j) + "}";
  return `[${out}]`;
}

/**
 * Chat's entry for one token: `top_logprobs` holds k entries, the first the
 * token itself; with k = 0 the key is left out.
 */
export function chatLogprob(token: string, pos: number, k: number): string {
  const p = parts(token);
  return entry(p, pos, 0) + (k > 0 ? `,"top_logprobs":${topList(p, pos, k)}}` : "}");
}

type EntryWriter = (token: string, pos: number, k: number) => string;

/** Characters of entries a pod remembers (about 16 MB); past it entries are written each time. */
const MEMO_CHARS = 8 << 20;

/**
 * A pod's written entries, shared by its answers: an entry depends only on
 * its family's format, k, the token and its position mod 3, and answers
 * reuse a small vocabulary, so each distinct entry is written once (the
 * UTF-8 bytes of k strings, k numbers: ~1.3 µs a token at k = 5).
 */
export class LogprobMemo {
  #chars = 0;
  readonly #tables = new Map<EntryWriter, Map<string, string>[][]>();

  /** The three position classes' tables of one format at one k. */
  tables(write: EntryWriter, k: number): Map<string, string>[] {
    let byK = this.#tables.get(write);
    if (byK === undefined) this.#tables.set(write, byK = []);
    return byK[k] ??= [new Map(), new Map(), new Map()];
  }

  /** Whether `chars` more characters may be held (and counts them). */
  room(chars: number): boolean {
    if (this.#chars + chars > MEMO_CHARS) return false;
    this.#chars += chars;
    return true;
  }
}

/** One answer's entries in one format, through the pod's memo (or one of its own). */
export class LogprobWriter {
  readonly #tables: Map<string, string>[];
  readonly #memo: LogprobMemo;
  constructor(
    private readonly k: number,
    private readonly write: EntryWriter,
    memo: LogprobMemo = new LogprobMemo(),
  ) {
    this.#memo = memo;
    this.#tables = memo.tables(write, k);
  }

  /** The entry of `token` at position `pos`. */
  entry(token: string, pos: number): string {
    const table = this.#tables[pos % 3];
    let e = table.get(token);
    if (e === undefined) {
      e = this.write(token, pos, this.k);
      if (this.#memo.room(e.length + token.length)) table.set(token, e);
    }
    return e;
  }

  /** The entries of a run of tokens from position `from`, comma-separated; empty tokens have none. */
  entries(tokens: readonly string[], from: number): string {
    let out = "";
    for (let i = 0; i < tokens.length; i++) {
      if (tokens[i] === "") continue;
      out += (out === "" ? "" : ",") + this.entry(tokens[i], from + i);
    }
    return out;
  }
}

/** Chat's `logprobs` object for a run of tokens starting at position `from`. */
export function chatLogprobs(
  tokens: readonly string[],
  from: number,
  k: number,
  memo?: LogprobMemo,
): string {
  return `{"content":[${new LogprobWriter(k, chatLogprob, memo).entries(tokens, from)}]}`;
}

/** Responses' entry: `top_logprobs` always present (`[]` for k = 0). */
export function responsesLogprob(token: string, pos: number, k: number): string {
  const p = parts(token);
  return entry(p, pos, 0) + `,"top_logprobs":${topList(p, pos, k)}}`;
}

/** Responses' `logprobs` array for a run of tokens starting at position `from`. */
export function responsesLogprobs(
  tokens: readonly string[],
  from: number,
  k: number,
  memo?: LogprobMemo,
): string {
  return `[${new LogprobWriter(k, responsesLogprob, memo).entries(tokens, from)}]`;
}

/**
 * Completions' `logprobs` object for tokens starting at position `from` and
 * byte offset `offset`: tokens, token_logprobs, top_logprobs (a map of k
 * entries per token, keys in byte order as Go writes maps) and text_offset.
 */
export function completionLogprobs(
  tokens: readonly string[],
  from: number,
  offset: number,
  k: number,
  tops: LogprobWriter = new LogprobWriter(k, completionTop),
): string {
  const toks: string[] = [];
  const values: number[] = [];
  const maps: string[] = [];
  const offsets: number[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    const pos = from + i;
    const at = offset;
    offset += byteLength(t);
    // An empty token has no entry, and no offset either.
    if (t === "") continue;
    offsets.push(at);
    toks.push(JSON.stringify(t));
    values.push(logprob(pos, 0));
    maps.push(tops.entry(t, pos));
  }
  return `{"tokens":[${toks.join(",")}],"token_logprobs":[${values.join(",")}],` +
    `"top_logprobs":[${maps.join(",")}],"text_offset":[${offsets.join(",")}]}`;
}

/** A completions token's top map: the token and k − 1 alternatives, keys in byte order. */
export function completionTop(t: string, pos: number, k: number): string {
  const keys: [string, number][] = [[t, logprob(pos, 0)]];
  for (let j = 1; j < k; j++) keys.push([alternative(t, j), logprob(pos, j)]);
  keys.sort((a, b) => compareBytes(a[0], b[0]));
  return `{${keys.map(([key, v]) => `${JSON.stringify(key)}:${v}`).join(",")}}`;
}

/** UTF-8 byte order (keys of a Go map). */
function compareBytes(a: string, b: string): number {
  const x = utf8.encode(a);
  const y = utf8.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** vLLM's max_logprobs: more top logprobs than this is a 400. */
export const MAX_LOGPROBS = 20;
