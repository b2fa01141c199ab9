/**
 * Chat messages as the engine counts them, whatever family they came from:
 * OpenAI chat messages, Responses items and Anthropic messages are all
 * converted to these before their prompt is rendered and tokenized.
 */

import { featuresOf, type MediaItem, mmItems } from "./api/vllm/features.ts";
import type { GenerationParams, PromptInput } from "./serving/params.ts";
import { generationInput, type PendingInput, validatedInput } from "./serving/pipeline.ts";
import { templateTool, type ToolDef } from "./tools/tool.ts";
import type { ToolCheckCache } from "./tools/checks.ts";
import type { ChatOptions, Encoding, Tokenizer } from "./tokenizer.ts";

export interface ToolCall {
  id: string;
  name: string;
  /** The raw arguments string (JSON text). */
  arguments: string;
}

export interface ChatMessage {
  role: string;
  /**
   * The content as the built-in chat text shows it (the reference's
   * PlainText): a string as is; of parts, the text parts and each image as
   * `image: <url>`, joined by "\n".
   */
  content: string;
  /** Only the text parts, joined by "\n": what a chat template and echo mode see. */
  text: string;
  /** Image, audio and video parts, in order (render features, sidecar timeouts). */
  media?: MediaItem[];
  /** An assistant message's tool calls. */
  toolCalls?: ToolCall[];
  /** A tool message's answer to this call. */
  toolCallId?: string;
}

/** A message whose content is a plain string. */
export function textMessage(role: string, text: string): ChatMessage {
  return { role, content: text, text };
}

/**
 * A chat prompt as the engine takes it: the rendered conversation's token
 * count, and what echo mode answers (by default the last user message).
 * Every family that converts to chat messages counts its prompt here.
 */
export function chatPrompt(
  messages: readonly ChatMessage[],
  tokenizer: Tokenizer,
  echoText: string = lastUserText(messages),
  opts?: ChatOptions,
  withIds = false,
): PromptInput | Promise<PromptInput> {
  if (withIds) {
    const enc = tokenizer.encodeChat(messages, opts);
    const media = messages.flatMap((m) => m.media ?? []);
    const input = (e: Encoding): PromptInput => {
      const features = media.length > 0 || e.features
        ? featuresOf(tokenizer.kind, media, e.ids.length, e.features)
        : undefined;
      const p: PromptInput = { promptTokens: e.ids.length, promptIds: e.ids, echoText };
      // Multimodal items enter the hashes of the blocks they overlap.
      if (features) p.promptMm = mmItems(features);
      return p;
    };
    return enc instanceof Promise ? enc.then(input) : input(enc);
  }
  const n = tokenizer.countChat(messages, opts);
  const input = (promptTokens: number): PromptInput => ({ promptTokens, echoText });
  return n instanceof Promise ? n.then(input) : input(n);
}

/** What echo mode answers: the last user message, else the last message. */
export function lastUserText(messages: readonly ChatMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i].role === "user") return messages[i].text;
  }
  return messages.at(-1)?.text ?? "";
}

/** How a conversation becomes a request's input. */
export interface ChatInputOptions {
  /** The prompt's ids are needed (the KV cache). */
  withIds: boolean;
  /** --skip-tool-validation */
  skipToolValidation: boolean;
  /** What echo mode answers (default: the last user message). */
  echoText?: string;
  /** The pod's memo of tool-list checks. */
  toolChecks?: ToolCheckCache;
}

/**
 * The input of a request that is a conversation (chat, Responses,
 * Messages): its tools validated, then its messages rendered with them.
 */
export function conversationInput(
  params: GenerationParams,
  messages: readonly ChatMessage[],
  toolDefs: readonly ToolDef[] | undefined,
  tokenizer: Tokenizer,
  opts: ChatInputOptions,
): PendingInput {
  return validatedInput(toolDefs, opts.skipToolValidation, () => {
    const tools = toolDefs?.length ? toolDefs.map(templateTool) : undefined;
    return generationInput(params, [
      chatPrompt(messages, tokenizer, opts.echoText, { tools }, opts.withIds),
    ]);
  }, opts.toolChecks);
}
