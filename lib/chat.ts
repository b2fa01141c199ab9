/**
 * Chat messages as the engine counts them, whatever family they came from:
 * OpenAI chat messages, Responses items and Anthropic messages are all
 * converted to these before their prompt is rendered and tokenized.
 */

import type { PromptInput } from "./serving/params.ts";
import type { Tokenizer } from "./tokenizer.ts";

export interface ToolCall {
  id: string;
  name: string;
  /** The raw arguments string (JSON text). */
  arguments: string;
}

export interface ChatMessage {
  role: string;
  /** Text parts joined; "" when there is none. */
  text: string;
  imageCount: number;
  /** An assistant message's tool calls. */
  toolCalls?: ToolCall[];
  /** A tool message's answer to this call. */
  toolCallId?: string;
}

/** The prompt the tokenizer counts: a minimal chat template. */
export function renderChat(messages: readonly ChatMessage[]): string {
  let s = "";
  for (const m of messages) {
    s += `<|${m.role}|>\n${m.text}`;
    if (m.toolCalls) { for (const c of m.toolCalls) s += `[${c.name}(${c.arguments})]`; }
    s += "\n";
  }
  return s + "<|assistant|>\n";
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
): PromptInput {
  return { promptTokens: tokenizer.count(renderChat(messages)), echoText };
}

/** What echo mode answers: the last user message, else the last message. */
export function lastUserText(messages: readonly ChatMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i].role === "user") return messages[i].text;
  }
  return messages.at(-1)?.text ?? "";
}
