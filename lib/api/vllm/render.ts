/**
 * vLLM's render endpoints (tokenizers.md, "Render endpoints"): the token ids
 * a completions or chat request would be given, without generating.
 * `POST /v1/completions/render` answers one `{"token_ids"}` per prompt;
 * `POST /v1/chat/completions/render` one `{"token_ids", "features"?}`.
 */
import { ApiError, badRequest } from "../../errors.ts";
import type { ModelRegistry } from "../../models.ts";
import type { Encoding, Tokenizer } from "../../tokenizer.ts";
import { type JsonObject, optString, requireObject } from "../../validate.ts";
import { parseMessages, parsePrompts } from "../openai/protocol.ts";
import { featuresOf, type MultimodalFeatures } from "./features.ts";

/**
 * The body, once its model is known to be a served base model: an unknown
 * name is a 404, a LoRA adapter a 400 (the render endpoints tokenize for the
 * base model). No model at all means the served one, as vLLM takes it.
 */
export function renderBody(models: ModelRegistry, body: unknown): JsonObject {
  const o = requireObject(body);
  const name = optString(o, "model");
  if (name) {
    if (models.require(name).lora !== null) {
      throw new ApiError(
        400,
        `The model \`${name}\` is a LoRA adapter and is not supported by the render endpoints.`,
      );
    }
  }
  return o;
}

/** The empty-prompt rules in the render endpoints' own words, before the shared ones. */
function checkPromptNotEmpty(raw: unknown): void {
  if (raw === undefined || raw === null || (Array.isArray(raw) && raw.length === 0)) {
    throw badRequest("prompt array must contain at least one prompt", "prompt");
  }
  if (raw === "") throw badRequest("prompt must not contain an empty string", "prompt");
  if (!Array.isArray(raw)) return;
  for (const p of raw) {
    if (p === "") throw badRequest("prompt must not contain an empty string", "prompt");
    if (Array.isArray(p) && p.length === 0) {
      throw badRequest("prompt must not contain an empty token-id array", "prompt");
    }
  }
}

/** The /v1/completions/render answer: a JSON array, one `{"token_ids"}` per prompt. */
export async function renderCompletions(tokenizer: Tokenizer, body: JsonObject): Promise<string> {
  checkPromptNotEmpty(body.prompt);
  const answers = [];
  for (const p of parsePrompts(body.prompt)) {
    // Token-id prompts are copied verbatim: they are already tokenized.
    answers.push({
      token_ids: "ids" in p ? p.ids : (await tokenize(tokenizer, tokenizer.encode(p.text))).ids,
    });
  }
  return JSON.stringify(answers);
}

interface ChatRenderAnswer {
  token_ids: number[];
  features?: MultimodalFeatures;
}

/**
 * The /v1/chat/completions/render answer; `features` only when the messages
 * carry media: the sidecar's own, or the built-in tokenizer's stubs.
 */
export async function renderChatCompletion(
  tokenizer: Tokenizer,
  body: JsonObject,
): Promise<string> {
  const raw = body.messages;
  if (raw === undefined || raw === null || (Array.isArray(raw) && raw.length === 0)) {
    throw badRequest("messages must not be empty", "messages");
  }
  const messages = parseMessages(raw);
  const enc = await tokenize(tokenizer, tokenizer.encodeChat(messages));
  const answer: ChatRenderAnswer = { token_ids: enc.ids };
  const media = messages.flatMap((m) => m.media ?? []);
  const features = featuresOf(tokenizer.kind, media, enc.ids.length, enc.features);
  if (features) answer.features = features;
  return JSON.stringify(answer);
}

/** An encoding shown to the client, with a tokenizer's failure as the reference's 500. */
async function tokenize(
  tokenizer: Tokenizer,
  pending: Encoding | Promise<Encoding>,
): Promise<Encoding> {
  try {
    const enc = await pending;
    tokenizer.remember?.(enc);
    return enc;
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw new ApiError(500, `Failed to tokenize, ${(e as Error)?.message ?? e}`);
  }
}
