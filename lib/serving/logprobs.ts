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

/** The UTF-8 bytes of `s` as a JSON array of ints. */
export function bytesJson(s: string): string {
  return `[${utf8.encode(s).join(",")}]`;
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

/** `{"token","logprob","bytes"}` of a token at a rank. */
function entry(token: string, pos: number, alt: number): string {
  return `{"token":${JSON.stringify(token)},"logprob":${logprob(pos, alt)},"bytes":${
    bytesJson(token)
  }`;
}

/** k entries: the token itself, then k − 1 alternatives. */
function topList(token: string, pos: number, k: number): string {
  let out = "";
  for (let j = 0; j < k; j++) {
    out += (j === 0 ? "" : ",") + entry(j === 0 ? token : alternative(token, j), pos, j) + "}";
  }
  return `[${out}]`;
}

/**
 * Chat's entry for one token: `top_logprobs` holds k entries, the first the
 * token itself; with k = 0 the key is left out.
 */
export function chatLogprob(token: string, pos: number, k: number): string {
  return entry(token, pos, 0) + (k > 0 ? `,"top_logprobs":${topList(token, pos, k)}}` : "}");
}

/** The entries of a run of tokens from position `from`, comma-separated; empty tokens have none. */
function entries(
  tokens: readonly string[],
  from: number,
  k: number,
  write: (token: string, pos: number, k: number) => string,
): string {
  let out = "";
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] === "") continue;
    out += (out === "" ? "" : ",") + write(tokens[i], from + i, k);
  }
  return out;
}

/** Chat's `logprobs` object for a run of tokens starting at position `from`. */
export function chatLogprobs(tokens: readonly string[], from: number, k: number): string {
  return `{"content":[${entries(tokens, from, k, chatLogprob)}]}`;
}

/** Responses' entry: `top_logprobs` always present (`[]` for k = 0). */
export function responsesLogprob(token: string, pos: number, k: number): string {
  return entry(token, pos, 0) + `,"top_logprobs":${topList(token, pos, k)}}`;
}

/** Responses' `logprobs` array for a run of tokens starting at position `from`. */
export function responsesLogprobs(tokens: readonly string[], from: number, k: number): string {
  return `[${entries(tokens, from, k, responsesLogprob)}]`;
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
): string {
  const toks: string[] = [];
  const values: number[] = [];
  const tops: string[] = [];
  const offsets: number[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    const pos = from + i;
    offsets.push(offset);
    offset += byteLength(t);
    if (t === "") continue;
    toks.push(JSON.stringify(t));
    values.push(logprob(pos, 0));
    const keys: [string, number][] = [[t, logprob(pos, 0)]];
    for (let j = 1; j < k; j++) keys.push([alternative(t, j), logprob(pos, j)]);
    keys.sort((a, b) => compareBytes(a[0], b[0]));
    tops.push(`{${keys.map(([key, v]) => `${JSON.stringify(key)}:${v}`).join(",")}}`);
  }
  // An empty token has no entry, and no offset either.
  const kept = offsets.filter((_, i) => tokens[i] !== "");
  return `{"tokens":[${toks.join(",")}],"token_logprobs":[${values.join(",")}],` +
    `"top_logprobs":[${tops.join(",")}],"text_offset":[${kept.join(",")}]}`;
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
