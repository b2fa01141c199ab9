/**
 * A model's own tokenizer, in-process (tokenizers.md, "Hugging Face
 * tokenizer"): `tokenizer.json` through @huggingface/tokenizers, the chat
 * template rendered with @huggingface/jinja as transformers'
 * `apply_chat_template` does (`add_generation_prompt`, tools, the special
 * tokens), the rendering encoded without adding special tokens again.
 *
 * Both libraries are imported only when a tokenizer file is loaded, so a
 * plain start never downloads them.
 */

import type { ChatMessage } from "../chat.ts";
import { ApiError } from "../errors.ts";
import { SENTENCES, sentenceTable } from "../sentences.ts";
import type {
  ChatOptions,
  Encoding,
  SentenceTable,
  Tokenizer,
  TokenizerKind,
} from "../tokenizer.ts";
import { builtinChatText, outputPieces } from "./builtin.ts";
import { type EncodeWorker, OFFLOAD_CHARS } from "./offload.ts";
import { TextCache } from "./text_cache.ts";

function lengthOf(enc: Encoding | Promise<Encoding>): number | Promise<number> {
  return enc instanceof Promise ? enc.then((e) => e.ids.length) : enc.ids.length;
}

/** The parts of @huggingface/tokenizers' Tokenizer used here. */
interface HfTokenizer {
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[] };
  decode(ids: number[], options?: { skip_special_tokens?: boolean }): string;
  id_to_token(id: number): string | undefined;
}

interface HfTemplate {
  render(items: Record<string, unknown>): string;
}

/** A loaded tokenizer: its files parsed once, shared read-only by every simulator. */
export interface HfFiles {
  tokenizer: HfTokenizer;
  template: HfTemplate | null;
  /** bos_token, eos_token, … as the template sees them. */
  specialTokens: Record<string, string>;
  /** Ids `decode` accepts: 0 ≤ id < this. */
  vocabSize: number;
  /** How to cut a text at its added tokens, when the library's encoding allows it (see Segmenter). */
  segmenter: Segmenter | null;
}

/**
 * The library encodes each stretch of text between added tokens (`<|im_start|>`,
 * …) on its own, so a chat template's rendering can be encoded a stretch at a
 * time and each stretch's ids remembered: a conversation's earlier messages
 * and a repeated system prompt are then encoded once. Only when no added
 * token strips its neighbours or is matched after normalizing, and the
 * pre-tokenizer does not treat the first stretch differently: otherwise the
 * stretches would not be independent, and the cache is not used.
 */
export interface Segmenter {
  /** Matches any added token, longest first; `split` keeps the matches. */
  re: RegExp;
  ids: Map<string, number>;
}

function segmenterOf(
  json: Record<string, unknown>,
  config: Record<string, unknown>,
): Segmenter | null {
  const added = Array.isArray(json.added_tokens) ? json.added_tokens : [];
  const ids = new Map<string, number>();
  for (const t of added) {
    if (typeof t?.content !== "string" || typeof t.id !== "number") return null;
    if (t.lstrip || t.rstrip || t.single_word || (t.normalized && json.normalizer)) return null;
    ids.set(t.content, t.id);
  }
  if (config.remove_space === true || config.do_lowercase_and_remove_accent) return null;
  if (/"prepend_scheme":\s*"first"/.test(JSON.stringify(json.pre_tokenizer ?? null))) return null;
  if (ids.size === 0) return null;
  const alternatives = [...ids.keys()].sort((a, b) => b.length - a.length)
    .map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return { re: new RegExp(`(${alternatives.join("|")})`), ids };
}

/** A tokenizer file that cannot be loaded: a start-up error naming it. */
export class TokenizerLoadError extends Error {}

const SPECIAL_KEYS = ["bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token"];

/**
 * Loads `tokenizer.json` from `dir` (with `tokenizer_config.json`,
 * `special_tokens_map.json` and `chat_template.jinja` when present).
 */
export async function loadHfFiles(
  dir: string,
  tokenizerFile = `${dir}/tokenizer.json`,
): Promise<HfFiles> {
  const json = (await readJson(tokenizerFile, true))!;
  const config = (await readJson(`${dir}/tokenizer_config.json`, false)) ?? {};
  const specialMap = (await readJson(`${dir}/special_tokens_map.json`, false)) ?? {};
  const { Tokenizer } = await import("@huggingface/tokenizers");
  let tokenizer: HfTokenizer;
  try {
    tokenizer = new Tokenizer(json, config) as unknown as HfTokenizer;
  } catch (e) {
    throw new TokenizerLoadError(`${tokenizerFile}: not a tokenizer: ${(e as Error).message}`);
  }
  const specialTokens: Record<string, string> = {};
  for (const k of SPECIAL_KEYS) {
    const v = tokenContent(config[k]) ?? tokenContent(specialMap[k]);
    if (v !== undefined) specialTokens[k] = v;
  }
  const source = await templateSource(dir, config);
  let template: HfTemplate | null = null;
  if (source !== null) {
    const { Template } = await import("@huggingface/jinja");
    try {
      template = new Template(source);
    } catch (e) {
      throw new TokenizerLoadError(
        `${dir}: the chat template does not parse: ${(e as Error).message}`,
      );
    }
  }
  return {
    tokenizer,
    template,
    specialTokens,
    vocabSize: vocabSizeOf(json),
    segmenter: segmenterOf(json, config),
  };
}

async function readJson(path: string, required: boolean): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (!required && e instanceof Deno.errors.NotFound) return null;
    throw new TokenizerLoadError(`${path}: ${(e as Error).message}`);
  }
  try {
    const v = JSON.parse(text);
    if (typeof v === "object" && v !== null && !Array.isArray(v)) return v;
  } catch (e) {
    throw new TokenizerLoadError(`${path}: not JSON: ${(e as Error).message}`);
  }
  throw new TokenizerLoadError(`${path}: not a JSON object`);
}

/** A special token as configs write it: a string, or an AddedToken `{content}`. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (
    typeof v === "object" && v !== null && typeof (v as { content?: unknown }).content === "string"
  ) {
    return (v as { content: string }).content;
  }
  return undefined;
}

/**
 * The chat template: `chat_template` of the config (a string, or named
 * templates of which "default" is used), else `chat_template.jinja`.
 */
async function templateSource(
  dir: string,
  config: Record<string, unknown>,
): Promise<string | null> {
  const t = config.chat_template;
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    const named = t.find((x) => x?.name === "default") ?? t[0];
    if (typeof named?.template === "string") return named.template;
  }
  try {
    return await Deno.readTextFile(`${dir}/chat_template.jinja`);
  } catch {
    return null;
  }
}

/** One past the highest id of the vocabulary and the added tokens. */
function vocabSizeOf(json: Record<string, unknown>): number {
  let max = -1;
  const model = json.model as { vocab?: unknown } | undefined;
  const vocab = model?.vocab;
  if (Array.isArray(vocab)) max = vocab.length - 1; // Unigram: [token, score] pairs
  else if (vocab && typeof vocab === "object") {
    for (const id of Object.values(vocab)) if (typeof id === "number" && id > max) max = id;
  }
  const added = json.added_tokens;
  if (Array.isArray(added)) {
    for (const t of added) if (typeof t?.id === "number" && t.id > max) max = t.id;
  }
  return max + 1;
}

/** A message as chat templates take it (vLLM passes tool-call arguments parsed). */
function templateMessage(m: ChatMessage): Record<string, unknown> {
  const out: Record<string, unknown> = { role: m.role, content: m.text };
  if (m.toolCalls) {
    out.tool_calls = m.toolCalls.map((c) => ({
      id: c.id,
      type: "function",
      function: { name: c.name, arguments: parsedArguments(c.arguments) },
    }));
  }
  if (m.toolCallId !== undefined) out.tool_call_id = m.toolCallId;
  return out;
}

function parsedArguments(args: string): unknown {
  try {
    const v = JSON.parse(args);
    if (typeof v === "object" && v !== null && !Array.isArray(v)) return v;
  } catch {
    // not JSON: the template gets the string as sent
  }
  return args;
}

/** Characters of stretches a tokenizer remembers the ids of (about 2 bytes of ids each). */
export const SEGMENT_CACHE_CHARS = 8_000_000;
/** Longer stretches are encoded every time (one would crowd out the rest). */
const MAX_CACHED_SEGMENT = 256 * 1024;

export class HuggingFaceTokenizer implements Tokenizer {
  /** One past the highest id of the vocabulary and the added tokens. */
  get vocabSize(): number {
    return this.files.vocabSize;
  }
  readonly kind: TokenizerKind = "huggingface";
  #sentences: SentenceTable | null = null;
  readonly #cache = new TextCache(SEGMENT_CACHE_CHARS, MAX_CACHED_SEGMENT);

  constructor(private readonly files: HfFiles, private readonly worker?: EncodeWorker) {}

  get sentences(): SentenceTable {
    return this.#sentences ??= sentenceTable(SENTENCES, (t) => this.pieces(t));
  }

  encode(text: string, addSpecialTokens = true): Encoding | Promise<Encoding> {
    if (this.worker && text.length >= OFFLOAD_CHARS) {
      return this.worker.encode(text, addSpecialTokens).then((ids) => ({ ids, text }));
    }
    if (!addSpecialTokens) return { ids: this.#plain(text), text };
    return { ids: this.files.tokenizer.encode(text, { add_special_tokens: true }).ids, text };
  }

  /** Ids without special tokens added, a remembered stretch at a time where that is exact. */
  #plain(text: string): number[] {
    const { segmenter, tokenizer } = this.files;
    if (segmenter === null) return tokenizer.encode(text, { add_special_tokens: false }).ids;
    const ids: number[] = [];
    for (const part of text.split(segmenter.re)) {
      if (part === "") continue;
      const special = segmenter.ids.get(part);
      if (special !== undefined) {
        ids.push(special);
        continue;
      }
      let got = this.#cache.get(part);
      if (got === undefined) {
        got = tokenizer.encode(part, { add_special_tokens: false }).ids;
        this.#cache.set(part, got);
      }
      for (let i = 0; i < got.length; i++) ids.push(got[i]);
    }
    return ids;
  }

  encodeChat(
    messages: readonly ChatMessage[],
    opts?: ChatOptions,
  ): Encoding | Promise<Encoding> {
    const { template, specialTokens } = this.files;
    // A model without a chat template: the built-in chat text, as the spec has it.
    if (template === null) return this.encode(builtinChatText(messages), false);
    let text: string;
    try {
      text = template.render({
        ...specialTokens,
        messages: messages.map(templateMessage),
        ...(opts?.tools?.length ? { tools: opts.tools } : {}),
        add_generation_prompt: true,
      });
    } catch (e) {
      // A template that refuses the conversation (e.g. roles out of order): vLLM's 400.
      throw new ApiError(400, `Chat template error: ${(e as Error)?.message ?? e}`, "messages");
    }
    return this.encode(text, false);
  }

  count(text: string, addSpecialTokens = true): number | Promise<number> {
    return lengthOf(this.encode(text, addSpecialTokens));
  }

  countChat(messages: readonly ChatMessage[], opts?: ChatOptions): number | Promise<number> {
    return lengthOf(this.encodeChat(messages, opts));
  }

  tokenStrings(enc: Encoding): string[] {
    return enc.ids.map((id) => this.files.tokenizer.id_to_token(id) ?? "");
  }

  pieces(text: string): string[] {
    // Answer pieces are made while the answer is planned, on this thread: a
    // text too long to encode here (an echoed megabyte) is cut by the
    // built-in splitter instead.
    if (text.length >= OFFLOAD_CHARS) return outputPieces(text);
    const ids = this.#plain(text);
    const out = incrementalPieces(ids, (s) => this.files.tokenizer.decode(s));
    // A text the tokenizer encodes to nothing still reaches the client.
    if (out.length === 0 && text.length > 0) return [text];
    return out;
  }

  pieceIds(piece: string): number[] {
    return this.#plain(piece);
  }

  decode(ids: readonly number[]): string | null {
    if (ids.length === 0) return ""; // the library refuses an empty list
    const size = this.files.vocabSize;
    for (const id of ids) if (!(id >= 0 && id < size)) return null;
    return this.files.tokenizer.decode(ids as number[], { skip_special_tokens: false });
  }
}

/**
 * Each id's text, decoded incrementally as vLLM's detokenizer does: a
 * window of ids is decoded and only the new, complete characters are the
 * piece, so a character split over several byte tokens is never sent as
 * broken UTF-8 (its first bytes' pieces are empty). The pieces
 * concatenate to the decoding of all the ids.
 */
export function incrementalPieces(
  ids: readonly number[],
  decode: (ids: number[]) => string,
): string[] {
  const out: string[] = new Array(ids.length);
  let prefix = 0; // start of the decoding window
  let read = 0; // ids before this have been sent
  let prefixText = "";
  for (let i = 0; i < ids.length; i++) {
    const text = decode(ids.slice(prefix, i + 1) as number[]);
    if (text.length > prefixText.length && !text.endsWith("\uFFFD")) {
      out[i] = text.slice(prefixText.length);
      prefix = read;
      read = i + 1;
      prefixText = decode(ids.slice(prefix, read) as number[]);
    } else out[i] = "";
  }
  // Bytes that never completed a character: sent with the last piece.
  if (read < ids.length && ids.length > 0) {
    const rest = decode(ids.slice(prefix) as number[]).slice(prefixText.length);
    out[ids.length - 1] += rest;
  }
  return out;
}
