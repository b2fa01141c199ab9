/**
 * The render sidecar (tokenizers.md, "Render sidecar client"): a vLLM
 * render server (`vllm launch render <model>`) tokenizes for us over HTTP,
 * as the reference simulator does in its "HF mode". Token strings come from
 * the built-in splitter run on the plain text, padded or merged to the
 * number of ids, as the reference cuts them.
 */

import type { ChatMessage } from "../chat.ts";
import { ApiError } from "../errors.ts";
import type { MultimodalFeatures } from "../api/vllm/features.ts";
import type {
  ChatOptions,
  Encoding,
  SentenceTable,
  Tokenizer,
  TokenizerKind,
} from "../tokenizer.ts";
import { BuiltinTokenizer, flattenMessages, splitText } from "./builtin.ts";

export interface RenderSettings {
  url: string;
  model: string;
  timeoutMs: number;
  mmTimeoutMs: number;
}

/** The answer bodies the sidecar may send: an array (its first element is used) or an object. */
interface RenderAnswer {
  token_ids?: unknown;
  features?: MultimodalFeatures;
}

/**
 * Prompts go to the sidecar; everything on the output side (answer pieces,
 * decoding the ids it has answered) is the built-in tokenizer's, which needs
 * no round trip.
 */
export class RenderTokenizer implements Tokenizer {
  readonly kind: TokenizerKind = "render";
  readonly #base = new BuiltinTokenizer();
  readonly #url: string;

  constructor(private readonly settings: RenderSettings) {
    this.#url = settings.url.replace(/\/+$/, "");
  }

  get sentences(): SentenceTable {
    return this.#base.sentences;
  }

  encode(text: string): Promise<Encoding> {
    if (text === "") return Promise.resolve({ ids: [], text });
    return this.#render(
      "/v1/completions/render",
      { model: this.settings.model, prompt: text },
      text,
      false,
    );
  }

  encodeChat(messages: readonly ChatMessage[], _opts?: ChatOptions): Promise<Encoding> {
    const text = flattenMessages(messages);
    if (messages.length === 0) return Promise.resolve({ ids: [], text });
    const mm = messages.some((m) => m.media?.some((x) => x.modality === "image"));
    return this.#render(
      "/v1/chat/completions/render",
      { model: this.settings.model, messages: messages.map(wireMessage) },
      text,
      mm,
    );
  }

  async count(text: string): Promise<number> {
    return (await this.encode(text)).ids.length;
  }

  async countChat(messages: readonly ChatMessage[], opts?: ChatOptions): Promise<number> {
    return (await this.encodeChat(messages, opts)).ids.length;
  }

  tokenStrings(enc: Encoding): string[] {
    return fitTokens(splitText(enc.text), enc.ids.length);
  }

  pieces(text: string): string[] {
    return this.#base.pieces(text);
  }

  pieceIds(piece: string): number[] {
    return this.#base.pieceIds(piece);
  }

  decode(ids: readonly number[]): string | null {
    return this.#base.decode(ids);
  }

  async #render(path: string, body: unknown, text: string, mm: boolean): Promise<Encoding> {
    const timeout = mm ? this.settings.mmTimeoutMs : this.settings.timeoutMs;
    let res: Response;
    let raw: string;
    try {
      res = await fetch(this.#url + path, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(timeout),
      });
      raw = await res.text();
    } catch (e) {
      throw failed(`post ${path}: ${(e as Error).message}`);
    }
    if (res.status < 200 || res.status >= 300) {
      throw failed(`vLLM render returned status ${res.status}: ${raw.slice(0, 1000)}`);
    }
    const answer = parseAnswer(raw);
    const ids = answer.token_ids;
    if (!Array.isArray(ids) || !ids.every((x) => Number.isInteger(x) && x >= 0)) {
      throw failed("RenderRequest: token_ids is not a list of token ids");
    }
    const enc: Encoding = { ids: ids as number[], text };
    if (answer.features) enc.features = answer.features;
    return enc;
  }
}

function failed(message: string): ApiError {
  return new ApiError(500, `Failed to tokenize, ${message}`);
}

function parseAnswer(raw: string): RenderAnswer {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (e) {
    throw failed(`RenderRequest: unmarshal response: ${(e as Error).message}`);
  }
  if (Array.isArray(v)) {
    if (v.length === 0) throw failed("RenderRequest: render returned empty array");
    v = v[0];
  }
  if (typeof v !== "object" || v === null) throw failed("RenderRequest: not a render answer");
  return v as RenderAnswer;
}

/** A message as the sidecar's chat render endpoint takes it (OpenAI's shape). */
function wireMessage(m: ChatMessage): Record<string, unknown> {
  const out: Record<string, unknown> = { role: m.role };
  if (m.media?.length) {
    const parts: unknown[] = [];
    if (m.text !== "") parts.push({ type: "text", text: m.text });
    for (const x of m.media) {
      if (x.modality === "image") parts.push({ type: "image_url", image_url: { url: x.source } });
      else if (x.modality === "video") {
        parts.push({ type: "video_url", video_url: { url: x.source } });
      } else parts.push({ type: "input_audio", input_audio: { data: x.source } });
    }
    out.content = parts;
  } else out.content = m.text;
  if (m.toolCalls) {
    out.tool_calls = m.toolCalls.map((c) => ({
      id: c.id,
      type: "function",
      function: { name: c.name, arguments: c.arguments },
    }));
  }
  if (m.toolCallId !== undefined) out.tool_call_id = m.toolCallId;
  return out;
}

/** The reference's splitIntoTokens: pad with "" or merge the tail into the last kept token. */
export function fitTokens(tokens: string[], count: number): string[] {
  if (count === tokens.length) return tokens;
  if (count > tokens.length) return tokens.concat(new Array(count - tokens.length).fill(""));
  if (count === 0) return [];
  return [...tokens.slice(0, count - 1), tokens.slice(count - 1).join("")];
}
