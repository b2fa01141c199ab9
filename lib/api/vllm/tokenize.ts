/**
 * vLLM's tokenizer endpoints (tokenizers.md): `POST /tokenize` (text or chat
 * messages → token ids) and `POST /detokenize` (token ids → text). Neither
 * runs through the engine.
 */
import type { ChatMessage } from "../../chat.ts";
import { ApiError, badRequest } from "../../errors.ts";
import type { Encoding, Tokenizer } from "../../tokenizer.ts";
import { isTokenId, optBool, optString, requireObject } from "../../validate.ts";
import { parseMessages } from "../openai/protocol.ts";

export interface TokenizeRequest {
  /** The prompt, when one was given. */
  prompt?: string;
  /** The messages, when they were given instead (possibly none). */
  messages?: ChatMessage[];
  /** vLLM's default: true for a prompt, false for messages. */
  addSpecialTokens: boolean;
  returnTokenStrs: boolean;
}

/** The reference's words for a body it cannot read into its request type. */
const UNPARSABLE = "Failed to read and parse tokenize request body, ";

/** A body that is not JSON (readJson's 400) in /tokenize's words. */
export function unparsableTokenizeBody(e: ApiError): ApiError {
  return e.status === 400 ? new ApiError(400, UNPARSABLE + e.message, e.param) : e;
}

/**
 * Validates a /tokenize body. A field of the wrong shape is a body that does
 * not parse (as it is for the reference's typed decoder); `model` is not
 * checked against the served names.
 */
export function parseTokenizeRequest(body: unknown): TokenizeRequest {
  let prompt: string | undefined;
  let messages: ChatMessage[] | undefined;
  let returnTokenStrs: boolean;
  let addSpecial: boolean | undefined;
  try {
    const o = requireObject(body);
    optString(o, "model");
    addSpecial = optBool(o, "add_special_tokens");
    returnTokenStrs = optBool(o, "return_token_strs") ?? false;
    prompt = optString(o, "prompt");
    const raw = o.messages;
    if (raw !== undefined && raw !== null) {
      // An empty list is "messages given" but renders to nothing.
      messages = Array.isArray(raw) && raw.length === 0 ? [] : parseMessages(raw);
    }
  } catch (e) {
    throw e instanceof ApiError ? unparsableTokenizeBody(e) : e;
  }
  // As the reference: an empty prompt counts as not given.
  if (prompt && messages !== undefined) {
    throw badRequest("both prompt and messages fields in tokenize request");
  }
  if (prompt) return { prompt, addSpecialTokens: addSpecial ?? true, returnTokenStrs };
  return { messages: messages ?? [], addSpecialTokens: addSpecial ?? false, returnTokenStrs };
}

/** The /tokenize answer: `{"max_model_len","count","tokens","token_strs"}`. */
export async function tokenizeAnswer(
  tokenizer: Tokenizer,
  maxModelLen: number,
  req: TokenizeRequest,
): Promise<string> {
  let enc: Encoding;
  try {
    if (req.prompt !== undefined) enc = await tokenizer.encode(req.prompt, req.addSpecialTokens);
    else if (req.messages && req.messages.length > 0) {
      enc = await tokenizer.encodeChat(req.messages);
    } else enc = { ids: [], text: "" };
    tokenizer.remember?.(enc);
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw new ApiError(500, `Failed to tokenize, ${(e as Error)?.message ?? e}`);
  }
  return JSON.stringify({
    max_model_len: maxModelLen,
    count: enc.ids.length,
    tokens: enc.ids,
    token_strs: req.returnTokenStrs ? tokenizer.tokenStrings(enc) : null,
  });
}

export interface DetokenizeRequest {
  /** The model named, when one was (checked by the caller). */
  model?: string;
  tokens: number[];
}

/** Validates a /detokenize body: `tokens`, an array of token ids, is required. */
export function parseDetokenizeRequest(body: unknown): DetokenizeRequest {
  const o = requireObject(body);
  // An empty name means "the served model", as vLLM takes it.
  const model = optString(o, "model") || undefined;
  const tokens = o.tokens;
  if (tokens === undefined || tokens === null) {
    throw badRequest("'tokens' is a required field.", "tokens");
  }
  if (!Array.isArray(tokens) || !tokens.every(isTokenId)) {
    throw badRequest("'tokens' must be an array of non-negative integer token ids.", "tokens");
  }
  return { model, tokens: tokens as number[] };
}

/** The longest text /detokenize writes (characters); longer is a 400, not a runtime error. */
export const MAX_DETOKENIZED = 16 * 1024 * 1024;

/** Ids decoded at a time: a request over the text bound stops early. */
const DECODE_SLICE = 65536;

/** The /detokenize answer `{"prompt": text}`; an id the tokenizer cannot decode is a 400. */
export function detokenizeAnswer(tokenizer: Tokenizer, tokens: readonly number[]): string {
  // Decoded a slice at a time, so an answer over the bound stops early
  // instead of building a string the runtime cannot hold.
  let text = "";
  for (let i = 0; i < tokens.length; i += DECODE_SLICE) {
    const slice = tokens.slice(i, i + DECODE_SLICE);
    const part = tokenizer.decode(slice);
    if (part === null) {
      // Only on failure: find which id to name.
      const bad = slice.find((id) => tokenizer.decode([id]) === null);
      throw badRequest(`Token id ${bad} is out of vocabulary.`, "tokens");
    }
    text += part;
    if (text.length > MAX_DETOKENIZED) {
      throw badRequest(
        `The decoded text is longer than ${MAX_DETOKENIZED} characters; decode fewer tokens.`,
        "tokens",
      );
    }
  }
  return JSON.stringify({ prompt: text });
}
